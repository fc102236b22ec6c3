"""Container log buffers that followers can stream while the container runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime


def rfc3339nano(moment: datetime | None = None) -> str:
    """A kubelet-style timestamp: ``2025-01-02T03:04:05.123456000Z`` (nanosecond field width)."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


class LogBuffer:
    """Lines of one container; lives on the server's event loop (append and read from it only)."""

    def __init__(self) -> None:
        self.lines: list[tuple[datetime, str]] = []
        self.closed = False
        self._changed = asyncio.Event()

    def append(self, text: str) -> None:
        """Add one line (without its newline), stamped now."""
        self.lines.append((datetime.now(UTC), text))
        self._wake()

    def close(self) -> None:
        """The container terminated: followers finish after the last line."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def text(self) -> str:
        """All lines joined, for tests and termination messages."""
        return "".join(f"{line}\n" for _, line in self.lines)

    async def stream(
        self,
        *,
        follow: bool,
        timestamps: bool,
        since: datetime | None = None,
        tail: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield formatted lines; with ``follow`` keep yielding new ones until the buffer closes."""
        start = 0
        if tail is not None:
            start = max(0, len(self.lines) - tail)
        index = start
        while True:
            while index < len(self.lines):
                moment, line = self.lines[index]
                index += 1
                if since is not None and moment < since:
                    continue
                prefix = f"{rfc3339nano(moment)} " if timestamps else ""
                yield f"{prefix}{line}\n".encode()
            if not follow or self.closed:
                return
            await self._changed.wait()
