"""Bounded page-number pagination for every list in the API."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class BoundedPageNumberPagination(PageNumberPagination):
    """Pages of PAGE_SIZE rows; ``?page_size=`` may ask for fewer or more, up to ``max_page_size``."""

    page_size_query_param = "page_size"
    max_page_size = 500
