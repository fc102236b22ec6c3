"""The manual-trigger form: one Airflow ``Param`` (JSON Schema) per per-run input.

The schema gives the form its widgets and a first check that Airflow runs on Trigger (a bad value
is refused before any run exists); ``config.run_config`` checks every value again (names, lengths,
hostile characters) before any pod starts, because scheduled and API-made runs can bypass the form.
Each pattern and length comes from its ``grammar`` owner, the one ``validation`` compiles too, so both
say the same.

Optional fields are ``["null", ...]``: Airflow's UI treats a field as required unless its type
lists "null", and it sends null for a field emptied by the user. Help texts are ``description_md``,
inside the schema: the UI shows them under the field, and Airflow's refusal of a bad value quotes the
schema, so the message a person reads on Trigger says the expected form, not just the pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from airflow.sdk import Param

from precompiled_drivers import config as run
from precompiled_drivers import grammar as g
from precompiled_drivers.settings import Settings, installation

# NVIDIA/gpu-driver-container commit the build recipe is pinned to (overridable per run).
DEFAULT_DRIVER_REPO_REF = "06a208ca9747c82b1ba99b76ecdcf2469b0a0207"
DEFAULT_DRIVER_VERSIONS = ["570.158.01"]
DEFAULT_CUDA_VERSION = "12.8.1"


def help_text(param: Param) -> str:
    """What the form shows under a field."""
    return str(param.schema.get("description_md") or param.description or "")


# The JSON Schema dialect every field declares. Airflow checks a field's schema against its dialect's
# meta-schema each time it resolves the field, and the dag-processor resolves every field twice per task
# whenever it serializes the DAG (13 fields x 16 tasks x 2, each re-parse). The draft-7 meta-schema checks
# in about a quarter of the time of the default (2020-12) one; the keywords used here mean the same in both.
SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def form_params(settings: Settings) -> dict[str, Param]:
    """Return the DAG's params; defaults come from the installation's settings."""
    params = {
        "ocp_versions": Param(
            [],
            type=["null", "array"],
            items={"type": "string", **g.OCP_VERSION.schema()},
            maxItems=run.OCP_VERSIONS_MAX,
            uniqueItems=True,
            title="OpenShift releases",
            description_md="Releases to build for, one per line, e.g. 4.18.12. Empty: the cluster's current "
            "release (plus its upgrade targets when look-ahead is on).",
        ),
        "arches": Param(
            ["x86_64"],
            type="array",
            items={"type": "string", "enum": [*g.ARCHES, *g.ARCH_ALIASES]},
            examples=list(g.ARCHES),  # the UI shows a multi-select of these
            minItems=1,
            maxItems=run.ARCHES_MAX,
            uniqueItems=True,
            title="Architectures",
            description_md="CPU architectures of the GPU nodes: x86_64, aarch64 (amd64/arm64 are accepted "
            "as aliases).",
        ),
        "driver_versions": Param(
            DEFAULT_DRIVER_VERSIONS,
            type="array",
            items={"type": "string", **g.DRIVER_VERSION.schema()},
            minItems=1,
            maxItems=run.DRIVER_VERSIONS_MAX,
            uniqueItems=True,
            title="Driver versions",
            description_md="NVIDIA data-center driver versions to build, one per line, like 570.158.01 "
            "(NNN.NN.NN). The first one is rolled out unless 'Rollout driver version' says otherwise.",
        ),
        "rollout_driver_version": Param(
            None,
            type=["null", "string"],
            **g.DRIVER_VERSION.schema(optional=True),
            title="Rollout driver version",
            description_md="Which of the built versions the ClusterPolicy should use, like 570.158.01; "
            "empty = the first driver version.",
        ),
        "cuda_version": Param(
            DEFAULT_CUDA_VERSION,
            type="string",
            **g.CUDA_VERSION.schema(),
            title="CUDA version",
            description_md="CUDA_VERSION passed to NVIDIA's Makefile (the base image of the driver "
            "container), like 12.8.1 (x.y.z).",
        ),
        "repository": Param(
            settings.target_repository or None,
            type=["null", "string"],
            **g.REPOSITORY.schema(optional=True),
            title="Image repository",
            description_md="Registry host[:port]/path the images are pushed to and the GPU Operator pulls "
            "from (ClusterPolicy spec.driver.repository), lowercase, like quay.io/acme/nvidia or "
            "127.0.0.1:5000/nvidia. Empty: the installation's PRECOMPILED_DRIVERS_TARGET_REPOSITORY.",
        ),
        "image_name": Param(
            settings.image_name,
            type="string",
            **g.IMAGE_NAME.schema(),
            title="Image name",
            description_md="ClusterPolicy spec.driver.image, like driver or nvidia-gpu-driver: lowercase "
            "letters, digits and '-' (the CRD's pattern, lowercase as image references must be).",
        ),
        "driver_repo_ref": Param(
            DEFAULT_DRIVER_REPO_REF,
            type="string",
            **g.GIT_REF.schema(),
            title="Driver recipe git ref",
            description_md="Commit, tag or branch of NVIDIA/gpu-driver-container to build from, like main, "
            "v1.2 or a 40-hex commit.",
        ),
        "operator_version": Param(
            None,
            type=["null", "string"],
            **g.OPERATOR_VERSION.schema(optional=True),
            title="GPU Operator version",
            description_md="Decides the OS-tag rule, like v26.7.0. Empty: read from the installed "
            "operator's Deployment.",
        ),
        "include_cluster_release": Param(
            True,
            type="boolean",
            title="Include the cluster's release",
            description_md="Also build for the release the cluster runs now (needed before the first "
            "rollout).",
        ),
        "force_rebuild": Param(
            False,
            type="boolean",
            title="Force rebuild",
            description_md="Rebuild and push even when the image tag already exists in the repository.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description_md="Build and push, then print the ClusterPolicy patch without applying it.",
        ),
        "verify_timeout_minutes": Param(
            30,
            type="number",
            minimum=run.VERIFY_MINUTES_MIN,
            maximum=run.VERIFY_MINUTES_MAX,
            title="Verify timeout (minutes)",
            description_md="How long to wait for the new driver pods to become Ready before rolling back.",
        ),
        "require_approval": Param(
            settings.require_approval,
            type="boolean",
            title="Require approval",
            description_md="Ask a person (Required Actions) to approve the ClusterPolicy patch, once the "
            "images are pushed. Default: the installation's PRECOMPILED_DRIVERS_REQUIRE_APPROVAL.",
        ),
        "allow_driver_restart": Param(
            False,
            type="boolean",
            title="Allow driver restart (NVIDIADriver mode)",
            description_md="When the cluster takes drivers from NVIDIADriver resources: may an NVIDIADriver "
            "with usePrecompiled: false be replaced by a precompiled one (the field is immutable)? Its "
            "pool's driver pods restart. Off: such a run is refused before anything changes.",
        ),
        "canary_pool": Param(
            None,
            type=["null", "string"],
            **g.NVIDIA_DRIVER_NAME.schema(optional=True),
            title="Canary NVIDIADriver (NVIDIADriver mode)",
            description_md="The NVIDIADriver rolled out and verified first, like gpu-driver-rhcos; the "
            "others follow one by one. Empty: the one with the fewest GPU nodes.",
        ),
    }
    for param in params.values():
        param.schema = {"$schema": SCHEMA_DIALECT, **param.schema}
    return params


def schema_patterns(schema: object) -> Iterator[str]:
    """Every ``pattern`` keyword's regex in a JSON Schema (nested ones included)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from schema_patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from schema_patterns(value)


def warm_validation() -> None:
    """Do once, in this process, the first-use work of validating the form (not the validation itself).

    Every parse validates the form when the DAG assigns it. jsonschema compiles each field's ``pattern``
    through ``re``'s process-wide cache (the meta-schema's ``regex`` format check, then the match) and sets
    up its draft-7 meta-schema check on first use. Done at import, this lands in the dag-processor's own
    process when the package is its plugins folder (every component imports the plugins folder at start),
    so each parser it forks starts warm: about 2 ms less per parse (#20). Otherwise the parse pays it
    once, as it would have anyway (the compiled patterns are cache hits later; the warm-up check is tiny).
    """
    for param in form_params(installation({})).values():
        for pattern in schema_patterns(param.schema):
            re.compile(pattern)
    Param("", schema={"$schema": SCHEMA_DIALECT, "type": "string", "pattern": "^$"}).resolve()


warm_validation()
