"""Property tests (hypothesis) for the rules everything else relies on: cron parsing, the dependency graph,
retry delays. Example counts are modest and fixed (derandomized) so CI is repeatable and quick; for a
deeper local hunt: TASKHUB_PROPERTY_EXAMPLES=2000 TASKHUB_PROPERTY_RANDOM=1 pytest tests/test_properties.py
"""

from __future__ import annotations

import math
import os
import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduling import services, validation
from scheduling.engine import cron
from scheduling.models import RetryPolicy, Task
from taskhub.exceptions import ValidationError

SCALE = int(os.environ.get("TASKHUB_PROPERTY_EXAMPLES", "0")) or None
FIXED = not os.environ.get("TASKHUB_PROPERTY_RANDOM")


def examples(count: int) -> Any:
    return settings(
        max_examples=SCALE or count,
        deadline=None,
        derandomize=FIXED,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- cron -----------------------------------------------------------------------------------------------

FIELD_NAMES = [name for name, _ in cron.FIELDS]
BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"]


@st.composite
def cron_field(draw: Any, index: int) -> str:
    """One cron field: mostly in range, sometimes just outside it, with ranges, steps, lists and names."""
    low, high = BOUNDS[index]
    number = st.integers(min_value=max(low - 1, 0), max_value=high + 2)
    names = MONTHS if index == 3 else DAYS if index == 4 else []
    atom = st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda r: f"{r[0]}-{r[1]}"),
        st.tuples(st.sampled_from(["*", f"{low}-{high}", f"{low}"]), st.integers(0, high + 2)).map(
            lambda s: f"{s[0]}/{s[1]}"
        ),
        *([st.sampled_from(names), st.sampled_from(names).map(str.lower)] if names else []),
    )
    return ",".join(draw(st.lists(atom, min_size=1, max_size=3)))


@st.composite
def cron_expr(draw: Any) -> str:
    return " ".join(draw(cron_field(i)) for i in range(5))


MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


def _refusal_names_a_field_or_the_shape(message: str) -> bool:
    return (
        any(f"{name} field" in message for name in FIELD_NAMES)
        or "expected 5 fields" in message
        or ("never fires: day-of-month field" in message)
    )


@examples(200)
@given(expr=cron_expr(), zone=st.sampled_from(ZONES), after=MOMENTS)
def test_accepted_cron_fires_strictly_later_each_time(expr: str, zone: str, after: datetime) -> None:
    try:
        normalised = cron.validate(expr)
    except cron.CronError as exc:
        assert _refusal_names_a_field_or_the_shape(str(exc)), str(exc)
        assert "\n" not in str(exc)
        return
    fires = cron.next_fires(normalised, zone, after, 4)
    assert fires[0] > after
    assert all(a < b for a, b in pairwise(fires)), fires
    assert all(f.tzinfo is not None and f.utcoffset() == timedelta(0) for f in fires)
    # Asking again from any fire gives the rest of the sequence: the schedule does not depend on where one starts.
    assert cron.next_fires(normalised, zone, fires[0], 3) == fires[1:]


@examples(150)
@given(expr=cron_expr())
def test_out_of_range_values_are_refused_naming_their_field(expr: str) -> None:
    fields = expr.split()
    out_of_range = []
    for index, field in enumerate(fields):
        low, high = BOUNDS[index]
        for atom in field.split(","):
            value = atom.split("/")[0]
            parts = value.split("-") if value not in ("*",) else []
            numbers = [int(p) for p in parts if p.isdigit()]
            if any(n < low or n > high for n in numbers) and not (index == 4 and 7 in numbers and max(numbers) <= 7):
                out_of_range.append(index)
    assume(out_of_range)
    with pytest.raises(cron.CronError) as refused:
        cron.validate(expr)
    # The message names the first bad field and quotes it; no field before the first out-of-range one
    # can be named unless it is bad itself (e.g. a step of 0).
    named = [i for i, name in enumerate(FIELD_NAMES) if str(refused.value).startswith(f"{name} field {fields[i]!r}")]
    assert named and named[0] <= out_of_range[0], str(refused.value)


@examples(400)
@given(text=st.text(max_size=60) | st.text(alphabet=" */-,0123456789LW#?RHMONJAFSDTUEC", max_size=40))
def test_arbitrary_text_is_a_cron_error_or_a_schedule(text: str) -> None:
    try:
        normalised = cron.validate(text)
    except cron.CronError as exc:
        assert _refusal_names_a_field_or_the_shape(str(exc)) and "\n" not in str(exc)
        return
    fires = cron.next_fires(normalised, "UTC", datetime(2026, 3, 1, tzinfo=UTC), 3)
    assert all(a < b for a, b in pairwise(fires))


@examples(300)
@given(
    task_type=st.sampled_from(["SCHEDULED", "IMMEDIATE"]),
    expr=st.one_of(st.none(), st.text(max_size=40), cron_expr(), st.integers(), st.lists(st.text(max_size=3))),
    zone=st.one_of(st.sampled_from(ZONES), st.text(max_size=30), st.none(), st.integers()),
)
def test_task_validation_of_cron_and_zone_only_raises_validation_errors(task_type: str, expr: Any, zone: Any) -> None:
    try:
        result = validation.validate_cron(task_type, expr, zone)
    except ValidationError as exc:
        assert set(exc.errors) <= {"cron_expr", "timezone"} and exc.errors
        assert all(message for messages in exc.errors.values() for message in messages)
        return
    assert (result == "") == (task_type == "IMMEDIATE")


# --- dependency graph --------------------------------------------------------------------------------------


def _has_cycle(edges: dict[int, set[int]]) -> bool:
    state: dict[int, int] = {}

    def visit(node: int) -> bool:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                return True
        state[node] = 2
        return False

    return any(node not in state and visit(node) for node in list(edges))


NODES = 6
UPDATES = st.lists(
    st.tuples(st.integers(0, NODES - 1), st.sets(st.integers(0, NODES - 1), max_size=3)), min_size=1, max_size=10
)


@pytest.mark.django_db
@examples(40)
@given(updates=UPDATES)
def test_dependency_validation_refuses_exactly_the_cycles(updates: list[tuple[int, set[int]]]) -> None:
    with transaction.atomic():
        tasks = [
            services.task_create(data={"name": f"n{i}", "tags": ["TEST_RECORD"], "parameters": {}})
            for i in range(NODES)
        ]
        model: dict[int, set[int]] = {i: set() for i in range(NODES)}
        for node, wanted in updates:
            proposed = {**model, node: set(wanted)}
            task = Task.objects.get(pk=tasks[node].pk)
            try:
                services.task_update(task=task, data={"dependencies": [tasks[i].pk for i in sorted(wanted)]})
            except ValidationError as exc:
                message = " ".join(exc.errors["dependencies"])
                if node in wanted:
                    assert "cannot depend on itself" in message
                else:
                    assert _has_cycle(proposed), f"refused an acyclic graph: {proposed}: {message}"
                    assert "would create a cycle" in message and f"n{node}" in message
                continue
            assert not _has_cycle(proposed), f"accepted a cycle: {proposed}"
            model = proposed
        stored = {
            i: {int(name[1:]) for name in Task.objects.get(pk=t.pk).dependencies.values_list("name", flat=True)}
            for i, t in enumerate(tasks)
        }
        assert stored == model and not _has_cycle(stored)
        transaction.set_rollback(True)


# --- retry delays ------------------------------------------------------------------------------------------

POLICIES = st.builds(
    RetryPolicy,
    retry_delay=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    backoff_factor=st.floats(min_value=1, max_value=1e3, allow_nan=False),
    max_delay=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    jitter=st.booleans(),
)
RETRIES = st.integers(min_value=-5, max_value=10**15)


def _expected(policy: RetryPolicy, number: int) -> float:
    if policy.retry_delay == 0:
        return 0.0
    log_delay = math.log(policy.retry_delay) + max(number - 1, 0) * math.log(policy.backoff_factor)
    return (
        policy.max_delay
        if log_delay > math.log(max(policy.max_delay, 1e-300))
        else min(policy.max_delay, policy.retry_delay * policy.backoff_factor ** max(number - 1, 0))
    )


@examples(400)
@given(policy=POLICIES, numbers=st.lists(RETRIES, min_size=2, max_size=6), seed=st.integers(0, 2**32))
def test_retry_delays_are_finite_non_negative_capped_and_non_decreasing(
    policy: RetryPolicy, numbers: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    numbers = sorted(numbers)
    delays = [policy.delay_for(n, rng) for n in numbers]
    assert all(math.isfinite(d) and 0 <= d <= policy.max_delay for d in delays), delays
    if policy.jitter:
        for n, d in zip(numbers, delays, strict=True):
            base = _expected(policy, n)
            assert base * 0.5 - 1e-6 <= d <= min(policy.max_delay, base * 1.5) + 1e-6
    else:
        assert all(a <= b for a, b in pairwise(delays)), (numbers, delays)
        for n, d in zip(numbers, delays, strict=True):
            assert d == pytest.approx(_expected(policy, n), rel=1e-9, abs=1e-9)


# --- what the properties found (kept as plain regression tests) ----------------------------------------------


@pytest.mark.parametrize(
    ("expr", "field"),
    [("* * * 0-0 *", "month"), ("* * 0-0 * *", "day-of-month"), ("0 0 * 0-0,5 *", "month")],
)
def test_zero_ranges_that_croniter_read_as_every_are_refused(expr: str, field: str) -> None:
    with pytest.raises(cron.CronError, match=f"^{field} field "):
        cron.validate(expr)


def test_zero_delay_stays_zero_for_huge_retry_numbers() -> None:
    policy = RetryPolicy(retry_delay=0, backoff_factor=2, max_delay=3600)
    assert policy.delay_for(10**6) == 0.0


# --- URLs: the allow-list check and the HTTP client read the same host ----------------------------------------

URL_HOSTS = ["127.0.0.1", "127.0.0.2", "localhost", "evil.example", "[::1]", "[::ffff:127.0.0.2]", "[::ffff:7f00:1]"]
URL_HOSTS += ["2130706434", "0x7f.1", "127.1", "LOCALHOST", "localhost.", "xn--80ak6aa92e.com", "[fe80::1%25lo]"]
URL_PIECES = ["@", "\\", ":", ":80", ":8080", ":0", ":65536", "%40", "%2f", "%5c", "#", "?", "/", "//", ";", "."]
URL_PIECES += ["\t", " ", "\n", "\r", "\x00", "\x7f", "。", "．", "％", "[", "]", "%00", "ⓛ", "\u200b", "\u2028", "ß"]
URL_PIECES += ["user:pw@", "a@", "&", "=", "..", "%", "%%", "+", "-", "_", "~", "!", "$", "'", "(", ")", "*", ","]


@st.composite
def hostile_url(draw: Any) -> str:
    """An http URL built from hosts and the characters that parsers are known to read differently."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "hTtPs", "ftp", "http", "https"]))
    slashes = draw(st.sampled_from(["://", "://", "://", ":/", ":", ":///", ":\\\\", "://\\", ":\\/"]))
    authority = "".join(draw(st.lists(st.sampled_from(URL_HOSTS + URL_PIECES), min_size=1, max_size=6)))
    tail = draw(st.one_of(st.just(""), st.text(max_size=12), st.sampled_from(["/", "/x?y=1#z", "/@a", "\\@b/"])))
    return f"{scheme}{slashes}{authority}{tail}"


@st.composite
def near_valid_url(draw: Any) -> str:
    """A usable URL with, now and then, one hostile piece before or after the host, in the port or the path."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    maybe = st.one_of(st.just(""), st.just(""), st.sampled_from(URL_PIECES + URL_HOSTS))
    port = draw(st.one_of(st.just(""), st.integers(0, 70000).map(lambda p: f":{p}"), st.just(":")))
    path = draw(st.one_of(st.just(""), st.text(max_size=15).map(lambda t: "/" + t), st.sampled_from(URL_PIECES)))
    return f"{scheme}://{draw(maybe)}{draw(st.sampled_from(URL_HOSTS))}{draw(maybe)}{port}{path}"


URLS = st.one_of(hostile_url(), near_valid_url(), near_valid_url(), st.text(max_size=40).map(lambda t: "http://" + t))


def _client_reading(target_url: str) -> tuple[str, str, int]:
    """Return (scheme, host, port) as requests' adapter and urllib3's pool manager will connect."""
    import requests
    from requests.adapters import _urllib3_request_context
    from urllib3 import PoolManager

    manager = PoolManager()
    prepared = requests.Request("GET", target_url).prepare()
    params, _ = _urllib3_request_context(prepared, True, None, manager)
    pool = manager.connection_from_host(**params)
    assert prepared.url == target_url  # preparing again changes nothing
    return pool.scheme, pool.host.removeprefix("[").removesuffix("]").rstrip("."), pool.port


@examples(600)
@given(url=URLS)
def test_an_accepted_url_is_read_alike_by_the_check_and_the_client(url: str) -> None:
    """Whatever a URL holds, the guard's reading is the HTTP client's: it is refused (with a message) otherwise."""
    from urllib.parse import urlsplit

    from scheduling.handlers.http_guard import UrlRefused, parse

    try:
        target = parse(url)
    except UrlRefused as exc:
        assert str(exc)
        return
    assert _client_reading(target.url) == (target.scheme, target.host, target.port)
    requests_url = __import__("requests").Request("GET", url).prepare().url
    assert requests_url == target.url  # what requests makes of the task's own text
    plain = urlsplit(url)
    assert (plain.hostname or "").rstrip(".") == target.host and "@" not in plain.netloc


@examples(600)
@given(url=URLS)
def test_the_allow_list_check_passes_only_hosts_it_lists(url: str) -> None:
    """With http.allowed_hosts = [127.0.0.1:*, localhost], an accepted URL connects to one of those two."""
    import ipaddress

    from scheduling.handlers.http_guard import check_url

    try:
        target = check_url(url)
    except ValidationError as exc:
        assert all(m.startswith("url: ") for m in exc.errors["parameters"]), exc.errors
        return
    scheme, host, port = _client_reading(target.url)
    if host != "localhost":
        address = ipaddress.ip_address(host)
        mapped = getattr(address, "ipv4_mapped", None)
        assert str(mapped or address) == "127.0.0.1", host
    assert (scheme, host, port) == (target.scheme, target.host, target.port)
