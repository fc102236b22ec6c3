"""Secure Boot keys, image signatures and provenance, end to end: the real DAG on the test cluster.

inspect_cluster and push run their real scripts on the host (real kubectl, real skopeo, real registry);
the build is the world's stand-in, which reads the key pair from the volumes the build pod really mounts.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.dag_runner import task_states, xcom
from harness.pipeline_world import NAMESPACE, World
from harness.signing_keys import module_keys, sigstore_keys

pytestmark = pytest.mark.e2e

LABELS = "io.github.precompiled-drivers."


class BuildPods:
    """Every build pod the test server received (a store listener: none is missed)."""

    def __init__(self, world: World) -> None:
        self.created: list[dict[str, Any]] = []
        world.cluster.store.add_listener(self._on_change)

    def _on_change(self, etype: str, res: Any, obj: dict[str, Any], old: Any) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        if (
            etype == "ADDED"
            and res.kind == "Pod"
            and labels.get("precompiled-drivers/step") == "build_driver_image"
        ):
            self.created.append(obj)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS", "1")


def mapped(dag_run: Any, task_id: str, count: int) -> list[Any]:
    """The results of a mapped task's ``count`` items."""
    return [xcom(dag_run, task_id, i) for i in range(count)]


def inspect(world: World, image: str) -> dict[str, Any]:
    """``skopeo inspect`` of a published image (what anyone with pull rights sees)."""
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_required_module_signing_without_secret_is_refused_before_any_build(
    world: World,
    run_dag: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    fast_retries: None,
) -> None:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING", "true")
    builds = BuildPods(world)
    before = world.policy_driver()

    dag_run = run_dag(driver_versions=["570.158.01"])
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["select_builds"] == "failed", states
    assert states["build_driver_image"] == "upstream_failed", states
    assert builds.created == [] and world.builds == []
    assert world.policy_driver() == before
    report = xcom(dag_run, "report")
    assert "select_builds: no build was started: Secure Boot module signing is required" in report
    assert (
        f"oc create secret generic precompiled-drivers-module-signing -n {NAMESPACE} "
        "--from-file=private_key.priv --from-file=public_key.der" in report
    )
    assert "Secret precompiled-drivers-module-signing" in capfd.readouterr().out


def test_signed_modules_and_provenance_on_every_published_image(
    world: World, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, fast_retries: None
) -> None:
    """Signing required and the key pair in place: every image is built with it, carries its fingerprint
    and its provenance as labels (``skopeo inspect``), the report lists them, and the rollout patches."""
    keys = module_keys()
    world.add_secret_files("precompiled-drivers-module-signing", keys.secret_data())
    monkeypatch.setenv("PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING", "true")
    builds = BuildPods(world)

    dag_run = run_dag(driver_versions=["570.158.01"])
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert world.policy_driver()["usePrecompiled"] is True
    assert len(builds.created) == len(world.builds) == 2  # the cluster's 4.18.12 and the form's 4.19.3

    cluster = xcom(dag_run, "inspect_cluster")
    assert cluster["signing_keys"] == {"module": keys.fingerprint, "image": ""}
    pushed = mapped(dag_run, "push_driver_image", 2)
    report = xcom(dag_run, "report")
    print(report)
    assert "Signing and provenance (fingerprints: sha256 of public_key.der / cosign.pub):" in report
    for result in pushed:
        labels = inspect(world, result["image"])["Labels"]
        kernel = labels[LABELS + "kernel-version"]
        release = {"5.14.0-427.50.1.el9_4.x86_64": "4.18.12", "5.14.0-570.12.1.el9_6.x86_64": "4.19.3"}[
            kernel
        ]
        assert labels[LABELS + "module-signing-key-sha256"] == keys.fingerprint
        assert labels[LABELS + "openshift-releases"] == release
        assert labels[LABELS + "driver-version"] == "570.158.01"
        assert labels[LABELS + "cuda-version"]
        assert labels[LABELS + "kernel-module-type"] == "open"
        assert labels[LABELS + "driver-toolkit-image"].startswith(
            "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:"
        )
        assert labels[LABELS + "nvidia-recipe"].startswith(
            "https://github.com/NVIDIA/gpu-driver-container.git@"
        )
        assert f"  {result['image']}\n" in report
        for key, value in labels.items():
            if key.startswith(LABELS):
                assert f"      {key}={value}\n" in report + "\n"
    assert report.count(f"module-signing-key-sha256={keys.fingerprint}") == 2
    assert report.count("image signature: not signed (PRECOMPILED_DRIVERS_SIGN_IMAGES is off)") == 2
    # Each build pod mounted the pair; inspect_cluster saw only the public half.
    for pod in builds.created:
        [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "module-signing"]
        assert volume["secret"]["secretName"] == "precompiled-drivers-module-signing"


def test_without_a_module_key_images_say_they_carry_the_throwaway_key(
    world: World, run_dag: Callable[..., Any], fast_retries: None
) -> None:
    dag_run = run_dag(driver_versions=["570.158.01"])
    assert dag_run.state == "success", task_states(dag_run)
    for result in mapped(dag_run, "push_driver_image", 2):
        labels = inspect(world, result["image"])["Labels"]
        assert labels[LABELS + "module-signing-key-sha256"].startswith("none (NVIDIA throw-away key")
    assert "module-signing-key-sha256=none (NVIDIA throw-away key" in xcom(dag_run, "report")


def write_policy(tmp_path: Path, world: World, public_key: bytes) -> list[str]:
    """skopeo options: a policy.json requiring a sigstore signature by ``public_key`` for the driver
    repository, signatures read from sigstore attachments (what OpenShift's ClusterImagePolicy sets up)."""
    (tmp_path / "cosign.pub").write_bytes(public_key)
    requirement = {
        "type": "sigstoreSigned",
        "keyPath": str(tmp_path / "cosign.pub"),
        "signedIdentity": {"type": "matchRepository"},
    }
    policy = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {world.repository: [requirement]}},
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    (tmp_path / "registries.d").mkdir()
    (tmp_path / "registries.d" / "sigstore.yaml").write_text(
        f"docker:\n  {world.registry.host}:\n    use-sigstore-attachments: true\n"
    )
    return ["--policy", str(tmp_path / "policy.json"), "--registries.d", str(tmp_path / "registries.d")]


def pull(options: list[str], image: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *options, "copy", "--src-tls-verify=false", f"docker://{image}", f"dir:{dest}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_image_signing_run(
    world: World,
    run_dag: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fast_retries: None,
) -> None:
    """Image signing on, both key pairs in place, the real skopeo pushes.

    Where skopeo can sign with sigstore keys (the pods' quay.io/skopeo/stable), the run publishes signed
    images that a sigstoreSigned policy accepts, and patches. Debian's skopeo 1.9.3 is built with sigstore
    disabled: then no image may be published unsigned, so no tag appears, the coverage gate keeps the
    ClusterPolicy as it was, and the report says why. Either way the policy refuses an unsigned image.
    """
    module = module_keys()
    image_keys = sigstore_keys()
    world.add_secret_files("precompiled-drivers-module-signing", module.secret_data())
    world.add_secret_files("precompiled-drivers-image-signing", image_keys.secret_data())
    monkeypatch.setenv("PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING", "true")
    monkeypatch.setenv("PRECOMPILED_DRIVERS_SIGN_IMAGES", "true")
    before = world.policy_driver()

    dag_run = run_dag(driver_versions=["570.158.01"])
    states = task_states(dag_run)
    report = xcom(dag_run, "report")
    print(report)
    assert states["build_driver_image[0]"] == states["build_driver_image[1]"] == "success", states
    assert xcom(dag_run, "inspect_cluster")["signing_keys"] == {
        "module": module.fingerprint,
        "image": image_keys.fingerprint,
    }
    options = write_policy(tmp_path, world, image_keys.public_key)
    tags = [b.rsplit(":", 1)[1] for b in world.builds]
    assert len(tags) == 2
    pushes = {states["push_driver_image[0]"], states["push_driver_image[1]"]}
    if pushes == {"success"}:
        assert dag_run.state == "success", states
        assert world.policy_driver()["usePrecompiled"] is True
        for result in mapped(dag_run, "push_driver_image", 2):
            assert result["signed"] is True and result["signing_key_sha256"] == image_keys.fingerprint
            accepted = pull(options, result["image"], tmp_path / result["digest"].split(":")[1])
            assert accepted.returncode == 0, accepted.stderr
        assert report.count(f"image signature: signed (sigstore), key sha256 {image_keys.fingerprint}") == 2
    else:
        assert dag_run.state == "failed", states
        assert pushes == {"failed"}, states
        assert "sigstore disabled" in report  # this skopeo cannot sign: the only acceptable failure
        assert "was not tagged" in report
        for tag in tags:
            assert world.registry.manifest_digest("nvidia/driver", tag) is None, tag
        assert world.policy_driver() == before
    world.registry.push_test_image("nvidia/driver", "unsigned")
    refused = pull(options, f"{world.repository}/driver:unsigned", tmp_path / "unsigned")
    assert refused.returncode != 0
    assert "A signature was required, but no signature exists" in refused.stderr
