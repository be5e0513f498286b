"""Pages for lists that grow without bound (the task history): an exact count up to a cap, any page beyond it.

Counting a million finished attempts costs 100-200 ms on PostgreSQL whatever the page shown, so the
history counts at most ``count_cap`` + 1 rows. Up to the cap ``count`` is exact and ``count_capped`` is
false; beyond it ``count`` is the cap, ``count_capped`` is true, and the ``next`` links still lead to
every row (a page reads one row more to know whether another page follows).
"""

from __future__ import annotations

import math
from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property
from rest_framework.response import Response

from taskhub.pagination import BoundedPageNumberPagination


class CappedPage(Page):
    """A page past the capped count: whether another follows is known from the one extra row read."""

    def __init__(self, object_list: Any, number: int, paginator: Paginator, more: bool) -> None:
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more


class CappedCountPaginator(Paginator):
    """A Django paginator that counts at most ``cap`` + 1 rows."""

    def __init__(self, object_list: Any, per_page: int, *, cap: int) -> None:
        super().__init__(object_list, per_page)
        self.cap = cap

    @cached_property
    def _counted(self) -> int:
        # COUNT(*) over a LIMITed subquery without ORDER BY: stops after cap + 1 rows.
        queryset = self.object_list
        assert isinstance(queryset, QuerySet), "CappedCountPaginator counts a queryset"
        return queryset.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self._counted > self.cap

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    def validate_number(self, number: Any) -> int:
        if not self.capped:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        return number

    def page(self, number: Any) -> Page:
        if not self.capped:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        if not rows:
            raise EmptyPage("That page contains no results")
        return CappedPage(rows[: self.per_page], number, self, more=len(rows) > self.per_page)

    @cached_property
    def num_pages(self) -> int:
        """Pages within the cap (the browsable API's page links; ``?page=last`` goes to the last of them)."""
        if not self.capped:
            return super().num_pages
        return math.ceil(self.cap / self.per_page)


class CappedCountPagination(BoundedPageNumberPagination):
    """Bounded pages whose ``count`` stops at ``count_cap``; ``count_capped`` says when it did."""

    count_cap = 1_000

    # DRF declares a class attribute; a method called the same way (with the instance's cap) is what it calls.
    def django_paginator_class(self, queryset: Any, page_size: int) -> CappedCountPaginator:  # type: ignore[override]  # see above
        return CappedCountPaginator(queryset, page_size, cap=self.count_cap)

    def get_paginated_response(self, data: Any) -> Response:
        assert self.page is not None, "paginate_queryset ran first"
        paginator = self.page.paginator
        assert isinstance(paginator, CappedCountPaginator)
        return Response(
            {
                "count": paginator.count,
                "count_capped": paginator.capped,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        response["properties"]["count"]["description"] = f"Matching rows, counted up to {self.count_cap:,}."
        response["properties"] = {
            "count": response["properties"]["count"],
            "count_capped": {
                "type": "boolean",
                "description": f"true when more than {self.count_cap:,} rows match (count is then {self.count_cap:,}; "
                "the next links still lead to every row).",
            },
            **{k: v for k, v in response["properties"].items() if k != "count"},
        }
        response["required"] = [*response.get("required", []), "count_capped"]
        return response
