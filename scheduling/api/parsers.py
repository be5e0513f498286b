"""A JSON parser that enforces DATA_UPLOAD_MAX_MEMORY_SIZE, which DRF's own parser does not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any, cast

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from taskhub.api import PayloadTooLarge


class _LimitedStream:
    """Wrap a request stream so reading more than ``limit`` bytes raises PayloadTooLarge."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.limit = stream, limit

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(self.limit + 1)
        if len(data) > self.limit:
            raise PayloadTooLarge()
        return data


class LimitedJSONParser(JSONParser):
    """Parse JSON bodies, refusing one larger than DATA_UPLOAD_MAX_MEMORY_SIZE (413) or nested too deeply (400)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            limit = 2**62
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > limit:
            raise PayloadTooLarge()
        try:
            return super().parse(cast(IO[Any], _LimitedStream(stream, limit)), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
