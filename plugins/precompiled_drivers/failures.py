"""Why a step failed, recorded by the step itself so the report can say it.

One mechanism for every step: a failing step (pod or Python) pushes one XCom under ``FAILURE_KEY``,
``{"reason": ..., "item": ..., "map_index": ...}``, before its exception ends the try. It is pushed
inside the try, not from a failure callback: the callback runs after the task is already marked
failed, when the report (``all_done``) may be reading. Airflow clears a task's XComs when a new try
starts, so only the last try's reason survives, and a retry that succeeds leaves none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

FAILURE_KEY = "failure"
MAX_REASON = 2_000  # an XCom is stored in the metadata DB: keep it a message, not a log

# The scripts' own error lines start with ERROR (``echo "ERROR: ..." >&2``).
_ERROR_LINE = re.compile(r"^\s*ERROR\b")


def reason_from_output(text: str | None) -> str | None:
    """The line that says why from a pod's output tail: its last ERROR line, else its last line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return (errors or lines)[-1][:MAX_REASON]


def reason_from_exception(exc: BaseException) -> str:
    """What a raised exception says (its message; its type when it has none)."""
    text = str(exc).strip()
    return (text or type(exc).__name__)[:MAX_REASON]


def record(ti: Any, reason: str, item: str | None = None) -> None:
    """Push the failure record of the running try (best effort: never hides the step's own error)."""
    value = {"reason": reason, "item": item, "map_index": getattr(ti, "map_index", -1)}
    try:
        ti.xcom_push(key=FAILURE_KEY, value=value)
    except Exception:  # the step's own error matters more than its summary
        import logging

        logging.getLogger(__name__).warning("could not record the failure reason", exc_info=True)


def recorded(fn: F) -> F:
    """Wrap a Python step so that an exception it raises is recorded before it fails the try.

    ``functools.wraps`` keeps the signature Airflow reads to pass context values (``ti``, ``params``...).
    A skip is not a failure and is not recorded.
    """

    @functools.wraps(fn)
    def step(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowSkipException

            if not isinstance(exc, AirflowSkipException):
                record(get_current_context()["ti"], reason_from_exception(exc))
            raise

    return step  # type: ignore[return-value]
