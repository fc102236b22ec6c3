"""Fault injection for reliability tests: failing requests, slow responses, evicted pods."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failure:
    pattern: re.Pattern[str]
    remaining: int
    status: int
    method: str | None
    retry_after: int | None


@dataclass
class _Delay:
    pattern: re.Pattern[str]
    seconds: float
    method: str | None


class Faults:
    """Rules the HTTP layer consults before every request (``path`` excludes the query string)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._evict: Callable[[str], int] | None = None

    def fail_next(
        self,
        path_regex: str,
        n: int = 1,
        status: int = 500,
        method: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``n`` requests whose path matches (``re.search``) with ``status``.

        ``retry_after`` adds a ``Retry-After`` header; note urllib3 (under the official client)
        then retries 413/429/503 by itself, so the failure may never reach the caller.
        """
        with self._lock:
            failure = _Failure(re.compile(path_regex), n, status, method and method.upper(), retry_after)
            self._failures.append(failure)

    def delay(self, path_regex: str, seconds: float, method: str | None = None) -> None:
        """Delay every matching request by ``seconds`` until ``clear()``."""
        with self._lock:
            self._delays.append(_Delay(re.compile(path_regex), seconds, method and method.upper()))

    def evict(self, pod_name_or_task_id: str) -> int:
        """Evict running pods now (by pod name or ``task_id`` label); returns how many."""
        if self._evict is None:
            raise RuntimeError("no kubelet attached")
        return self._evict(pod_name_or_task_id)

    def clear(self) -> None:
        """Drop every rule."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    def attach_evictor(self, evict: Callable[[str], int]) -> None:
        """Wire the kubelet's eviction (done by the cluster at start)."""
        self._evict = evict

    def check(self, method: str, path: str) -> tuple[_Failure | None, float]:
        """Return (failure to answer with or None, seconds to wait) for one request; counts it."""
        with self._lock:
            wait = sum(
                d.seconds for d in self._delays if d.pattern.search(path) and d.method in (None, method)
            )
            for failure in self._failures:
                if (
                    failure.remaining > 0
                    and failure.pattern.search(path)
                    and failure.method in (None, method)
                ):
                    failure.remaining -= 1
                    return failure, wait
            self._failures = [f for f in self._failures if f.remaining > 0]
            return None, wait
