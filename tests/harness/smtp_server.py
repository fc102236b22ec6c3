"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every mail it receives, for notification tests.

    with MailCatcher() as mails:
        env.update(mails.airflow_env())   # AIRFLOW_CONN_SMTP_DEFAULT + the recipient setting
        ...
        mail = mails.wait_for(lambda m: "FAILED" in m["Subject"])

The Airflow connection points the smtp provider's ``SmtpHook`` at it without TLS/SSL (extras
``disable_tls``/``disable_ssl``, as the provider reads them in hooks/smtp.py ``use_ssl``/``smtp_starttls``)
and with one try (``retry_limit``: 0), so a refused connection shows at once.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from harness.airflow_standalone import free_port

RECIPIENT = "gpu-team@example.test"
SENDER = "airflow@example.test"


class _Handler:
    """aiosmtpd handler: parse and keep each message (aiosmtpd calls ``handle_DATA``)."""

    def __init__(self, sink: list[dict[str, Any]], lock: threading.Lock) -> None:
        self.sink, self.lock = sink, lock

    # aiosmtpd calls the handler method named after the SMTP command.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.sink.append(
                {
                    "Subject": str(message["Subject"] or ""),
                    "From": envelope.mail_from,
                    "To": list(envelope.rcpt_tos),
                    "text": _text(message),
                }
            )
        return "250 Message accepted for delivery"


def _text(message: EmailMessage) -> str:
    """Every text part of the mail, decoded (the notifier sends one HTML part)."""
    parts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
    return "\n".join(str(p) for p in parts)


class MailCatcher:
    """An SMTP server on 127.0.0.1:<free port>; ``mails`` holds what it received."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.mails: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._controller = Controller(_Handler(self.mails, self._lock), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailCatcher:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def airflow_env(self, recipient: str = RECIPIENT) -> dict[str, str]:
        """The SMTP connection and the notification settings that send to this server."""
        conn = {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 0, "timeout": 10},
        }
        return {
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(conn),
            "PRECOMPILED_DRIVERS_NOTIFY_EMAIL": recipient,
            "PRECOMPILED_DRIVERS_NOTIFY_FROM": SENDER,
        }

    def received(self) -> list[dict[str, Any]]:
        """A copy of the mails received so far."""
        with self._lock:
            return list(self.mails)

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 60, what: str = "a mail"
    ) -> dict[str, Any]:
        """The first received mail ``match`` accepts; TimeoutError listing the subjects seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.received() if match(m)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise TimeoutError(f"no {what} after {timeout:.0f}s; got: {[m['Subject'] for m in self.received()]}")
