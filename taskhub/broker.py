"""Celery's filesystem broker with atomic message writes (the embedded default's broker).

kombu's filesystem transport creates a message file and then writes to it,
while a consumer may already move and read that file: it then reads an empty
payload, fails with a JSON error, and the message is lost. Here a message is
written under a name consumers ignore and renamed into place, which is atomic.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "taskhubfs"


class Channel(filesystem.Channel):
    # The signature of kombu's filesystem Channel._put, which itself renames its base's "message" argument.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]  # kombu's own mismatch
        """Put a message on ``queue``: write a hidden temporary file, then rename it into the queue."""
        filename = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, filename)
        # Consumers take files named "<stamp>.<queue>.msg"; ".<name>.tmp" never matches.
        temporary = os.path.join(self.data_folder_out, f".{filename}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(ALIAS, "taskhub.broker:Transport")
