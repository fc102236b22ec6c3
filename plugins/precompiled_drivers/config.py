"""One validated description of a run, built from the form (or a release event) and the settings.

Everything downstream reads this object, never raw params, so each value is checked exactly once,
before any pod starts, with an error that names the field. It holds the run's choices only: the
installation's settings are ``settings.installation()`` and the look-ahead's are the discovery
Variables, each read where it is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import grammar as g
from precompiled_drivers import validation as v
from precompiled_drivers.settings import Settings

# The run's limits: run_config checks them and the form's schema says them (form.py reads these).
OCP_VERSIONS_MAX = 64
ARCHES_MAX = len(g.ARCHES)
DRIVER_VERSIONS_MAX = 10
VERIFY_MINUTES_MIN, VERIFY_MINUTES_MAX = 0.1, 240


@dataclass(frozen=True)
class Target:
    """One OpenShift release to build for."""

    version: str
    arch: str
    source: str = "form"  # form | event | cluster | upgrade
    clusters: tuple[str, ...] = ()  # an event's: the fleet's clusters that follow its channel (none: all)

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the release, ignoring why it was chosen."""
        return (self.version, self.arch)


@dataclass(frozen=True)
class RunConfig:
    """The validated inputs of one run."""

    targets: tuple[Target, ...]
    arches: tuple[str, ...]
    driver_versions: tuple[str, ...]
    rollout_driver_version: str
    cuda_version: str
    repository: str
    image_name: str
    driver_repo_ref: str
    operator_version: str
    include_cluster_release: bool
    force_rebuild: bool
    dry_run: bool
    verify_timeout_seconds: int
    # Ask a person before the patch (the form's field; a run without it, the installation's setting).
    require_approval: bool = False
    # NVIDIADriver mode: may a compiled NVIDIADriver be replaced by a precompiled one (its pool's driver
    # pods restart), and which NVIDIADriver rolls out first ("" = the one with the fewest GPU nodes).
    allow_driver_restart: bool = False
    canary_pool: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom (a target has ``clusters`` only when an event named some)."""
        data = asdict(self)
        for target in data["targets"]:
            if not target["clusters"]:
                del target["clusters"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Inverse of ``to_dict``."""
        values = dict(data)
        values["targets"] = tuple(
            Target(**{**t, "clusters": tuple(t.get("clusters") or ())}) for t in values["targets"]
        )
        for key in ("arches", "driver_versions"):
            values[key] = tuple(values[key])
        return cls(**values)


def run_config(
    params: Mapping[str, Any],
    settings: Settings,
    event_releases: Sequence[Mapping[str, Any]] = (),
) -> RunConfig:
    """Validate the installation's settings and the form's params (and any release events) into a
    ``RunConfig``; ``settings`` gives the defaults of the repository and the image name.

    Raises ``validation.ValidationError`` naming the first bad field.
    """
    settings.validate()
    arches = tuple(v.string_list(params.get("arches", ["x86_64"]), "arches", v.arch, max_items=ARCHES_MAX))
    # The form sends null for an emptied optional field: it means the default, as a missing key does.
    versions = v.string_list(
        _or_default(params, "ocp_versions", []),
        "ocp_versions",
        v.ocp_version,
        min_items=0,
        max_items=OCP_VERSIONS_MAX,
    )
    targets = [Target(version, arch, "form") for version in versions for arch in arches]
    for i, event in enumerate(event_releases):
        if not isinstance(event, Mapping):
            raise v.ValidationError(f"event[{i}]", event, "a release event with version and arch")
        targets.append(
            Target(
                v.ocp_version(event.get("version"), f"event[{i}].version"),
                v.arch(event.get("arch"), f"event[{i}].arch"),
                "event",
                tuple(str(name) for name in event.get("clusters") or ()),
            )
        )
    drivers = tuple(
        v.string_list(
            params.get("driver_versions"), "driver_versions", v.driver_version, max_items=DRIVER_VERSIONS_MAX
        )
    )
    rollout = params.get("rollout_driver_version") or drivers[0]
    v.driver_version(rollout, "rollout_driver_version")
    if rollout not in drivers:
        raise v.ValidationError(
            "rollout_driver_version", rollout, f"one of the driver versions being built: {', '.join(drivers)}"
        )
    repository = params.get("repository") or settings.target_repository
    if not repository:
        raise v.ValidationError(
            "repository",
            repository,
            "the registry/path to push to, e.g. quay.io/acme/nvidia "
            "(set it in the form or PRECOMPILED_DRIVERS_TARGET_REPOSITORY)",
        )
    operator_version = _or_default(params, "operator_version", "")
    return RunConfig(
        targets=tuple(unique_targets(targets)),
        arches=arches,
        driver_versions=drivers,
        rollout_driver_version=rollout,
        cuda_version=v.cuda_version(params.get("cuda_version"), "cuda_version"),
        repository=v.repository(repository, "repository"),
        image_name=v.image_name(params.get("image_name") or settings.image_name, "image_name"),
        driver_repo_ref=v.git_ref(params.get("driver_repo_ref"), "driver_repo_ref"),
        operator_version=v.operator_version(operator_version, "operator_version"),
        include_cluster_release=v.boolean(
            params.get("include_cluster_release", True), "include_cluster_release"
        ),
        force_rebuild=v.boolean(params.get("force_rebuild", False), "force_rebuild"),
        dry_run=v.boolean(params.get("dry_run", False), "dry_run"),
        verify_timeout_seconds=_minutes(params.get("verify_timeout_minutes", 30), "verify_timeout_minutes"),
        require_approval=v.boolean(
            _or_default(params, "require_approval", settings.require_approval), "require_approval"
        ),
        allow_driver_restart=v.boolean(
            _or_default(params, "allow_driver_restart", False), "allow_driver_restart"
        ),
        canary_pool=_canary_pool(params.get("canary_pool")),
    )


def _canary_pool(value: Any) -> str:
    """The form's canary_pool: null or "" mean the default (the smallest pool), else an NVIDIADriver name."""
    return "" if value in (None, "") else v.nvidia_driver_name(value, "canary_pool")


def _or_default(params: Mapping[str, Any], key: str, default: Any) -> Any:
    """``params[key]``, or ``default`` when it is missing or null (an emptied optional form field)."""
    value = params.get(key)
    return default if value is None else value


def _minutes(value: Any, field: str) -> int:
    """Minutes (fractions allowed) as whole seconds, at least 6."""
    low, high = VERIFY_MINUTES_MIN, VERIFY_MINUTES_MAX
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise v.ValidationError(field, value, f"a number of minutes from {low} to {high}")
    return round(value * 60)


def unique_targets(targets: Sequence[Target]) -> list[Target]:
    """``targets`` without repeats of a release (version, arch); the first one's source wins."""
    found: dict[tuple[str, str], Target] = {}
    for target in targets:
        found.setdefault(target.key, target)
    return list(found.values())
