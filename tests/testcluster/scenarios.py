"""What a pod does when the kubelet stand-in runs it, chosen per task from the pod's labels."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ScenarioResult:
    """What an ``action`` callback returns; every field left None keeps the scenario's value."""

    exit_code: int | None = None
    xcom: Any = None
    logs: list[str] | None = None
    termination_message: str | None = None


@dataclass
class Scenario:
    """One task's behaviour.

    - ``logs``: lines the base container prints, spread over ``duration``.
    - ``exit_code``: the base container's exit code (0 -> pod Succeeded, else Failed).
    - ``duration``: seconds the base container stays Running.
    - ``xcom``: JSON value written to ``/airflow/xcom/return.json`` (when the pod has the sidecar).
    - ``termination_message``: put in the base container's ``terminated.message``.
    - ``run_on_host``: run the container's command on this machine instead (see hostrun.py).
    - ``action``: Python callback ``action(pod) -> ScenarioResult | None`` run in a thread while the
      container is Running (after the logs); its result overrides the fields above.
    - ``evict_after``: seconds after start when the pod is evicted (phase Failed, reason Evicted).
    - ``pending``: seconds the pod stays Pending before its containers start.
    """

    logs: list[str] = field(default_factory=list)
    exit_code: int = 0
    duration: float = 0.2
    xcom: Any = None
    termination_message: str | None = None
    run_on_host: bool = False
    action: Callable[[dict[str, Any]], ScenarioResult | None] | None = None
    evict_after: float | None = None
    pending: float = 0.1


DEFAULT = Scenario(xcom={})


class Scenarios:
    """Registry of scenarios keyed by (task_id, map_index, try_number); None matches any value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, int | None, int | None], Scenario] = {}

    def set(
        self, task_id: str, scenario: Scenario, map_index: int | None = None, try_number: int | None = None
    ) -> None:
        """Make pods of ``task_id`` (optionally one map index / try) behave as ``scenario``."""
        with self._lock:
            self._by_key[(task_id, map_index, try_number)] = scenario

    def clear(self) -> None:
        """Forget every scenario (pods fall back to the default: quick success, XCom ``{}``)."""
        with self._lock:
            self._by_key.clear()

    def for_pod(self, pod: dict[str, Any]) -> Scenario:
        """Pick the most specific scenario for a pod from its KPO labels."""
        labels = (pod.get("metadata") or {}).get("labels") or {}
        task_id = labels.get("task_id", "")
        map_index = _int_or_none(labels.get("map_index"))
        try_number = _int_or_none(labels.get("try_number"))
        with self._lock:
            for key in (
                (task_id, map_index, try_number),
                (task_id, map_index, None),
                (task_id, None, try_number),
                (task_id, None, None),
            ):
                if key in self._by_key:
                    return self._by_key[key]
        return DEFAULT


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
