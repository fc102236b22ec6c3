"""The manual-trigger form: one Airflow ``Param`` (JSON Schema) per per-run input.

The schema gives the form its widgets and a first check; ``config.run_config`` checks every value
again (names, lengths, hostile characters) before any pod starts, because scheduled and API-made runs
can bypass the form.
"""

from __future__ import annotations

from airflow.sdk import Param

from precompiled_drivers.settings import Settings

# NVIDIA/gpu-driver-container commit the build recipe is pinned to (overridable per run).
DEFAULT_DRIVER_REPO_REF = "06a208ca9747c82b1ba99b76ecdcf2469b0a0207"
DEFAULT_DRIVER_VERSIONS = ["570.158.01"]
DEFAULT_CUDA_VERSION = "12.8.1"

OCP_VERSION_PATTERN = r"^4\.[0-9]{1,3}\.[0-9]{1,3}(-[0-9A-Za-z.]{1,40})?$"
DRIVER_VERSION_PATTERN = r"^[0-9]{3}\.[0-9]{2,3}(\.[0-9]{2,3})?$"

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
            type="array",
            items={"type": "string", "pattern": OCP_VERSION_PATTERN},
            maxItems=50,
            title="OpenShift releases",
            description="Releases to build for, e.g. 4.18.12. Empty: the cluster's current release "
            "(plus its upgrade targets when look-ahead is on).",
        ),
        "arches": Param(
            ["x86_64"],
            type="array",
            items={"type": "string", "enum": ["x86_64", "aarch64", "amd64", "arm64"]},
            minItems=1,
            maxItems=2,
            title="Architectures",
            description="CPU architectures of the GPU nodes (amd64/arm64 are accepted as aliases).",
        ),
        "driver_versions": Param(
            DEFAULT_DRIVER_VERSIONS,
            type="array",
            items={"type": "string", "pattern": DRIVER_VERSION_PATTERN},
            minItems=1,
            maxItems=10,
            title="Driver versions",
            description="NVIDIA data-center driver versions to build, e.g. 570.158.01. "
            "The first one is rolled out unless 'Rollout driver version' says otherwise.",
        ),
        "rollout_driver_version": Param(
            "",
            type="string",
            maxLength=20,
            title="Rollout driver version",
            description="Which of the built versions the ClusterPolicy should use; empty = the first.",
        ),
        "cuda_version": Param(
            DEFAULT_CUDA_VERSION,
            type="string",
            pattern=r"^[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,2})?$",
            title="CUDA version",
            description="CUDA_VERSION passed to NVIDIA's Makefile (base image of the driver container).",
        ),
        "repository": Param(
            settings.target_repository,
            type="string",
            maxLength=255,
            title="Image repository",
            description="Registry and path the images are pushed to and the GPU Operator pulls from "
            "(ClusterPolicy spec.driver.repository), e.g. quay.io/acme/nvidia.",
        ),
        "image_name": Param(
            settings.image_name,
            type="string",
            pattern=r"^[a-zA-Z0-9-]{1,63}$",
            title="Image name",
            description="ClusterPolicy spec.driver.image (letters, digits and '-' only, as the CRD demands).",
        ),
        "driver_repo_ref": Param(
            DEFAULT_DRIVER_REPO_REF,
            type="string",
            maxLength=100,
            title="Driver recipe git ref",
            description="Commit, tag or branch of NVIDIA/gpu-driver-container to build from.",
        ),
        "operator_version": Param(
            "",
            type="string",
            maxLength=20,
            title="GPU Operator version",
            description="Decides the OS-tag rule. Empty: read from the installed operator's Deployment.",
        ),
        "include_cluster_release": Param(
            True,
            type="boolean",
            title="Include the cluster's release",
            description="Also build for the release the cluster runs now (needed before the first rollout).",
        ),
        "force_rebuild": Param(
            False,
            type="boolean",
            title="Force rebuild",
            description="Rebuild and push even when the image tag already exists in the repository.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Build and push, then print the ClusterPolicy patch without applying it.",
        ),
        "verify_timeout_minutes": Param(
            30,
            type="number",
            minimum=0.1,
            maximum=240,
            title="Verify timeout (minutes)",
            description="How long to wait for the new driver pods to become Ready before rolling back.",
        ),
    }
    for param in params.values():
        param.schema = {"$schema": SCHEMA_DIALECT, **param.schema}
    return params
