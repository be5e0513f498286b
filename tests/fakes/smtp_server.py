"""A minimal SMTP server on 127.0.0.1 that accepts every message and keeps it (for email report tests)."""

from __future__ import annotations

import socketserver
from email import message_from_bytes
from email.message import Message
from typing import Any

from tests.fakes import serving_thread


class FakeSMTP:
    """Speaks enough SMTP for smtplib (EHLO, optional AUTH PLAIN, MAIL, RCPT, DATA, QUIT)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.logins: list[str] = []
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                sender, recipients = "", []
                self.reply("220 fake-smtp ESMTP")
                while line := self.rfile.readline():
                    command = line.decode(errors="replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.reply("250-fake-smtp")
                        self.reply("250 AUTH PLAIN LOGIN")
                    elif verb == "AUTH":
                        server.logins.append(command)
                        self.reply("235 2.7.0 Authentication successful")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        server.messages.append((sender, recipients, message_from_bytes(data)))
                        self.reply("250 OK queued")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = serving_thread(self.server)

    def start(self) -> FakeSMTP:
        self.thread.start()
        return self

    def stop(self, *args: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
