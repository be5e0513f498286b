"""RetryPolicy.delay_for: min(max_delay, retry_delay * backoff_factor ** (n - 1)), jitter within ±50%."""

from __future__ import annotations

import random

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from scheduling.models import RetryPolicy


def policy(**fields: object) -> RetryPolicy:
    values: dict[str, object] = {"name": "p", "retry_delay": 10, "backoff_factor": 2, "max_delay": 3600}
    values.update(fields)
    return RetryPolicy(**values)


@pytest.mark.parametrize(("retry", "delay"), [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160)])
def test_delay_grows_by_the_backoff_factor(retry: int, delay: float) -> None:
    assert policy().delay_for(retry) == delay


def test_delay_is_capped_by_max_delay() -> None:
    capped = policy(max_delay=100)
    assert [capped.delay_for(n) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]


def test_backoff_factor_one_is_a_constant_delay() -> None:
    assert {policy(backoff_factor=1, retry_delay=7).delay_for(n) for n in range(1, 20)} == {7}


def test_fractional_factor_and_zero_delay() -> None:
    assert policy(retry_delay=4, backoff_factor=1.5).delay_for(3) == pytest.approx(9.0)
    assert policy(retry_delay=0).delay_for(5) == 0


def test_huge_retry_number_does_not_overflow() -> None:
    assert policy(backoff_factor=10, max_delay=86400).delay_for(10_000) == 86400


def test_retry_number_below_one_is_treated_as_the_first_retry() -> None:
    assert policy().delay_for(0) == 10


def test_jitter_stays_within_half_to_one_and_a_half_times_and_under_the_cap() -> None:
    jittery = policy(jitter=True, max_delay=100)
    rng = random.Random(1234)
    for retry, base in [(1, 10), (2, 20), (3, 40)]:
        samples = [jittery.delay_for(retry, rng) for _ in range(500)]
        assert min(samples) >= base * 0.5
        assert max(samples) <= base * 1.5
        # It really spreads retries out: both halves of the range are used.
        assert min(samples) < base * 0.75 and max(samples) > base * 1.25
    capped = [jittery.delay_for(6, rng) for _ in range(200)]  # base 100 = max_delay
    assert max(capped) <= 100
    assert min(capped) >= 50


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    jittery = policy(jitter=True)
    assert jittery.delay_for(3, random.Random(7)) == jittery.delay_for(3, random.Random(7))


def test_no_jitter_ignores_the_rng() -> None:
    assert policy().delay_for(2, random.Random(99)) == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("retry_delay", -1), ("backoff_factor", 0.5), ("max_delay", -5), ("max_retries", -1)],
)
def test_model_validation_refuses_out_of_range_values(field: str, value: float) -> None:
    with pytest.raises(DjangoValidationError) as caught:
        policy(**{field: value}).full_clean()
    assert field in caught.value.message_dict


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [("retry_delay", -1), ("backoff_factor", 0.5), ("max_delay", -5)])
def test_database_constraints_refuse_out_of_range_values(field: str, value: float) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        policy(**{field: value}).save()
