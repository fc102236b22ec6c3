"""Every packaged step script: shellcheck, conventions, and small real runs with fake oc/skopeo/kubectl.

The fakes are tiny bash scripts put first on PATH; they log their arguments so the tests can check what
the scripts asked for. Real kubectl/skopeo runs against the local test cluster live elsewhere.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from precompiled_drivers.cluster import parse_cluster
from precompiled_drivers.steps.base import script as pod_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "plugins" / "precompiled_drivers" / "scripts"
SHELLCHECK = ROOT / ".venv" / "bin" / "shellcheck"
ALL_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.sh"))
LIB = "lib.sh"  # prepended to every step script in its pod (steps/base.py script())
STEP_SCRIPTS = [name for name in ALL_SCRIPTS if name != LIB]
DIGEST = "sha256:" + "d" * 64
OTHER_DIGEST = "sha256:" + "0" * 64
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64


def test_there_are_scripts() -> None:
    assert len(STEP_SCRIPTS) >= 9
    assert LIB in ALL_SCRIPTS


# ----------------------------------------------------------------------------- static checks


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_shellcheck_clean(name: str) -> None:
    result = subprocess.run(
        [str(SHELLCHECK), "--severity=style", "--shell=bash", "-x", str(SCRIPTS / name)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", STEP_SCRIPTS)
def test_shellcheck_clean_as_the_pod_runs_it(name: str) -> None:
    """lib.sh and the script together: a helper's variables and the script's own meet here.

    SC2329 (a function never invoked) is left out: each script uses only some of the library's helpers.
    """
    result = subprocess.run(
        [str(SHELLCHECK), "--severity=style", "--shell=bash", "--exclude=SC2329", "-"],
        input=pod_script(name),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_conventions(name: str) -> None:
    text = (SCRIPTS / name).read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    # set -e must be on before the first command runs: only comments and blanks above it.
    before = lines[1 : lines.index("set -euo pipefail")]
    assert all(not line.strip() or line.lstrip().startswith("#") for line in before)
    assert text.endswith("\n")


@pytest.mark.parametrize("name", STEP_SCRIPTS)
def test_the_pod_runs_the_library_then_the_script(name: str) -> None:
    text = (SCRIPTS / name).read_text()
    assert pod_script(name) == (SCRIPTS / LIB).read_text() + text
    assert '"${XCOM_RETURN:-/airflow/xcom/return.json}"' in pod_script(name)
    # One way to write a result and one token auth file: the library's, not a copy of it.
    assert "write_result " in text
    assert "RESULT_FILE" not in text and "XCOM_RETURN" not in text
    assert "serviceaccount:" not in text and "SA_TOKEN_FILE" not in text
    assert not re.search(r"^(write_result|token_authfile|transient_error|kubectl_retry)\(\)", text, re.M)


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_no_jinja(name: str) -> None:
    text = (SCRIPTS / name).read_text()
    assert not re.search(r"\{%[-+\s]", text), f"{name}: Jinja statement"  # printf's '{%s}' is fine
    for match in re.finditer(r"\{\{(.*?)\}\}", text):
        # skopeo's Go-template format strings are the only double braces allowed.
        allowed = ("{{.Digest}}", '{{index .Labels \\"$MODULE_TYPE_LABEL\\"}}')
        assert match.group(0) in allowed, f"{name}: {match.group(0)!r} looks like Jinja"
    for word in ("params", "ti", "var", "dag", "conf", "macros", "task"):
        assert not re.search(r"\{\{\s*" + word + r"\b", text), f"{name}: Jinja {word}"


# ----------------------------------------------------------------------------- helpers for runs


def fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text('#!/usr/bin/env bash\nprintf \'%s\\n\' "$*" >>"$FAKE_LOG"\n' + body)
    path.chmod(0o755)


def run(script: str, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run a packaged script like its pod does (``bash -c <text> <name>``); return the process and result."""
    result_file = tmp_path / "xcom" / "return.json"
    full_env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "XCOM_RETURN": str(result_file),
        "SA_TOKEN_FILE": str(tmp_path / "no-token"),
        **env,
    }
    proc = subprocess.run(
        ["bash", "-c", pod_script(script), script],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
        timeout=60,
    )
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return proc, result


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret" / ".dockerconfigjson"
    path.parent.mkdir()
    path.write_text('{"auths": {"quay.io": {"auth": "cGxhbnRlZDpzZWNyZXQ="}}}')
    return path


# ----------------------------------------------------------------------------- inspect_driver_toolkit

DTK_RELEASE = {
    "KERNEL_VERSION": "5.14.0-427.50.1.el9_4.x86_64",
    "RT_KERNEL_VERSION": "5.14.0-427.50.1.el9_4.x86_64+rt",
    "RHEL_VERSION": "9.4",
}


def test_inspect_driver_toolkit(tmp_path: Path) -> None:
    release_file = tmp_path / "driver-toolkit-release.json"
    release_file.write_text(json.dumps(DTK_RELEASE, indent=2) + "\n")
    env = {
        "RELEASE_VERSION": "4.18.12",
        "RELEASE_ARCH": "x86_64",
        "DTK_IMAGE": DTK,
        "DTK_RELEASE_FILE": str(release_file),
    }
    proc, result = run("inspect_driver_toolkit.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result == {"version": "4.18.12", "arch": "x86_64", "dtk_image": DTK, "toolkit": DTK_RELEASE}
    assert "5.14.0-427.50.1.el9_4.x86_64" in proc.stdout


def test_inspect_driver_toolkit_two_streams(tmp_path: Path) -> None:
    # openshift/driver-toolkit Dockerfile.rhel10 writes the same three keys.
    rhel10 = {
        "KERNEL_VERSION": "6.12.0-55.12.1.el10_0.x86_64",
        "RT_KERNEL_VERSION": "6.12.0-55.12.1.el10_0.x86_64+rt",
        "RHEL_VERSION": "10.0",
    }
    release_file = tmp_path / "driver-toolkit-release.json"
    release_file.write_text(json.dumps(DTK_RELEASE) + "\n")
    copied = tmp_path / "driver-toolkit-10-release.json"  # where the init container put it
    copied.write_text(json.dumps(rhel10) + "\n")
    dtk10 = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "b" * 64
    env = {
        "RELEASE_VERSION": "4.20.4",
        "RELEASE_ARCH": "x86_64",
        "DTK_IMAGE": DTK,
        "DTK_RELEASE_FILE": str(release_file),
        "DTK_IMAGE_10": dtk10,
        "DTK_RELEASE_FILE_10": str(copied),
    }
    proc, result = run("inspect_driver_toolkit.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result["toolkit"] == DTK_RELEASE
    assert (result["dtk_image_10"], result["toolkit_10"]) == (dtk10, rhel10)
    copied.unlink()
    proc, result = run("inspect_driver_toolkit.sh", tmp_path, env)
    assert proc.returncode == 1
    assert "not copied" in proc.stderr


def test_inspect_driver_toolkit_without_the_file(tmp_path: Path) -> None:
    env = {
        "RELEASE_VERSION": "4.18.12",
        "RELEASE_ARCH": "x86_64",
        "DTK_IMAGE": "quay.io/not/a-dtk:1",
        "DTK_RELEASE_FILE": str(tmp_path / "absent.json"),
    }
    proc, result = run("inspect_driver_toolkit.sh", tmp_path, env)
    assert proc.returncode == 1
    assert result is None
    assert "is this a Driver Toolkit image?" in proc.stderr


def test_inspect_driver_toolkit_needs_its_inputs(tmp_path: Path) -> None:
    proc, result = run("inspect_driver_toolkit.sh", tmp_path, {"RELEASE_ARCH": "x86_64", "DTK_IMAGE": DTK})
    assert proc.returncode != 0
    assert "RELEASE_VERSION" in proc.stderr
    assert result is None


# ----------------------------------------------------------------------------- resolve_driver_toolkit

RELEASE = "quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64"


def resolve_env(auth_file: Path) -> dict[str, str]:
    return {
        "RELEASE_VERSION": "4.18.12",
        "RELEASE_ARCH": "x86_64",
        "RELEASE_IMAGE": RELEASE,
        "PULL_SECRET_FILE": str(auth_file),
    }


DTK10 = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "b" * 64
# What oc prints for a tag the payload lacks (openshift/oc pkg/cli/admin/release/info.go findImageSpec).
NO_DTK10 = (
    f"echo 'error: no image tag \"driver-toolkit-10\" exists in the release image {RELEASE}' >&2; exit 1"
)


def fake_oc(bin_dir: Path, dtk10: str) -> None:
    """oc answering --image-for=driver-toolkit with DTK and driver-toolkit-10 with ``dtk10`` (a command)."""
    fake(
        bin_dir,
        "oc",
        f"""case "$4" in
  --image-for=driver-toolkit) echo '{DTK}' ;;
  --image-for=driver-toolkit-10) {dtk10} ;;
  *) exit 2 ;;
esac
""",
    )


def test_resolve_driver_toolkit(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake_oc(bin_dir, NO_DTK10)
    proc, result = run("resolve_driver_toolkit.sh", tmp_path, resolve_env(auth_file))
    assert proc.returncode == 0, proc.stderr
    assert result == {
        "version": "4.18.12",
        "arch": "x86_64",
        "release_image": RELEASE,
        "dtk_image": DTK,
        "dtk_image_10": "",
    }
    assert calls(tmp_path) == [
        f"adm release info --image-for=driver-toolkit -a {auth_file} {RELEASE}",
        f"adm release info --image-for=driver-toolkit-10 -a {auth_file} {RELEASE}",
    ]
    assert "driver-toolkit-10: not in this release" in proc.stdout


def test_resolve_driver_toolkit_two_streams(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake_oc(bin_dir, f"echo '{DTK10}'")
    proc, result = run("resolve_driver_toolkit.sh", tmp_path, resolve_env(auth_file))
    assert proc.returncode == 0, proc.stderr
    assert (result["dtk_image"], result["dtk_image_10"]) == (DTK, DTK10)


@pytest.mark.parametrize(
    ("dtk10", "says"),
    [
        ("echo 'error: unable to read image: unauthorized' >&2; exit 1", "unauthorized"),
        ("echo 'quay.io/x/dtk:latest'", "expected a pull spec by digest from oc for driver-toolkit-10"),
    ],
)
def test_resolve_driver_toolkit_10_other_failures_fail(
    tmp_path: Path, bin_dir: Path, auth_file: Path, dtk10: str, says: str
) -> None:
    fake_oc(bin_dir, dtk10)
    proc, result = run("resolve_driver_toolkit.sh", tmp_path, resolve_env(auth_file))
    assert proc.returncode == 1
    assert result is None
    assert says in proc.stderr


def test_resolve_driver_toolkit_oc_fails(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "oc", "echo 'error: unable to read image: unauthorized' >&2\nexit 1\n")
    proc, result = run("resolve_driver_toolkit.sh", tmp_path, resolve_env(auth_file))
    assert proc.returncode == 1
    assert result is None
    assert f"'oc adm release info' failed for {RELEASE}" in proc.stderr
    assert "unauthorized" in proc.stderr  # oc's own message is kept


@pytest.mark.parametrize(
    "printed",
    [
        "quay.io/openshift-release-dev/ocp-v4.0-art-dev:driver-toolkit",  # a tag, not a digest
        f"{DTK}\nextra line",
        f"{DTK}; touch /tmp/x",
        "",
    ],
)
def test_resolve_driver_toolkit_odd_output(
    tmp_path: Path, bin_dir: Path, auth_file: Path, printed: str
) -> None:
    (tmp_path / "out.txt").write_text(printed)
    fake(bin_dir, "oc", f"cat '{tmp_path / 'out.txt'}'\n")
    proc, result = run("resolve_driver_toolkit.sh", tmp_path, resolve_env(auth_file))
    assert proc.returncode == 1
    assert result is None
    assert "expected a pull spec by digest" in proc.stderr


# ----------------------------------------------------------------------------- check_published_images

FAKE_SKOPEO = """
cmd="$1"
last="${*: -1}"
case "$cmd" in
  inspect)
    case "$last" in
      *exists*)
        # With a --format that asks for the module-type label, print it after the digest, as skopeo does.
        if [[ "$*" == *Labels* ]]; then echo "$FAKE_DIGEST ${FAKE_LABEL:-}"; else echo "$FAKE_DIGEST"; fi ;;
      *missing*)
        echo 'time="x" level=fatal msg="reading manifest 1 in quay.io/acme: manifest unknown"' >&2
        exit 1 ;;
      *noname*) echo 'level=fatal msg="reading manifest: name unknown: repository not found"' >&2; exit 1 ;;
      *denied*) echo 'level=fatal msg="unauthorized: authentication required"' >&2; exit 1 ;;
      *)
        # The push target: absent until copied (or FAKE_PUSHED: an earlier try pushed it), as a registry is.
        if [[ -n "${FAKE_PUSHED:-}" ]] || grep -q '^copy ' "$FAKE_LOG"; then
          echo "${FAKE_INSPECT_DIGEST:-$FAKE_DIGEST}"
        else
          echo 'level=fatal msg="reading manifest: manifest unknown"' >&2
          exit 1
        fi ;;
    esac ;;
  copy)
    if [[ "${FAKE_COPY:-ok}" != ok ]]; then
      echo 'level=fatal msg="denied: requested access is refused"' >&2
      exit 1
    fi ;;
  *) echo "unexpected skopeo $*" >&2; exit 99 ;;
esac
"""


LABEL = "io.github.precompiled-drivers.kernel-module-type"
CHECK_FORMAT = f'{{{{.Digest}}}} {{{{index .Labels "{LABEL}"}}}}'


def check_env(auth_file: Path, *images: str) -> dict[str, str]:
    return {
        "IMAGES": "\n".join(images),
        "MODULE_TYPE_LABEL": LABEL,
        "PUSH_AUTH_FILE": str(auth_file),
        "TLS_VERIFY": "false",
        "FAKE_DIGEST": DIGEST,
    }


def test_check_published_images(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    images = ["quay.io/acme/driver:exists-1", "quay.io/acme/driver:missing-2", "quay.io/acme/noname:x"]
    proc, result = run("check_published_images.sh", tmp_path, check_env(auth_file, *images, ""))
    assert proc.returncode == 0, proc.stderr
    assert result == {images[0]: DIGEST, images[1]: "", images[2]: ""}
    assert calls(tmp_path) == [
        f"inspect --authfile {auth_file} --tls-verify=false --format {CHECK_FORMAT} docker://{image}"
        for image in images
    ]


@pytest.mark.parametrize(
    ("label", "wanted", "published"),
    [
        ("open", "open", True),
        ("proprietary", "open", False),  # built with the other module type: rebuilt, not reused
        ("", "open", False),  # no label: nobody can say which modules it carries
        ("", "", True),  # no type asked for (an image this run does not roll out)
    ],
)
def test_check_published_images_module_type(
    tmp_path: Path, bin_dir: Path, auth_file: Path, label: str, wanted: str, published: bool
) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    image = "quay.io/acme/driver:exists-1"
    env = {**check_env(auth_file, f"{image} {wanted}".strip()), "FAKE_LABEL": label}
    proc, result = run("check_published_images.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result == {image: DIGEST if published else ""}
    if not published:
        assert "it is rebuilt" in proc.stdout


def test_check_published_images_none(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    proc, result = run("check_published_images.sh", tmp_path, check_env(auth_file))
    assert proc.returncode == 0, proc.stderr
    assert result == {}
    assert calls(tmp_path) == []


def test_check_published_images_auth_error_is_not_missing(
    tmp_path: Path, bin_dir: Path, auth_file: Path
) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    env = check_env(auth_file, "quay.io/acme/driver:exists-1", "quay.io/acme/driver:denied-2")
    proc, result = run("check_published_images.sh", tmp_path, env)
    assert proc.returncode == 1
    assert result is None  # no partial answer that would make the pipeline rebuild or skip wrongly
    assert "cannot tell whether quay.io/acme/driver:denied-2 exists" in proc.stderr
    assert "push secret" in proc.stderr


def test_check_published_images_needs_credentials(tmp_path: Path, bin_dir: Path) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    proc, _ = run("check_published_images.sh", tmp_path, {"IMAGES": "quay.io/a/b:1", "PUSH_AUTH_FILE": ""})
    assert proc.returncode != 0
    assert "PUSH_AUTH_FILE" in proc.stderr
    assert calls(tmp_path) == []


# ----------------------------------------------------------------------------- push_driver_image

STAGING = "image-registry.openshift-image-registry.svc:5000/ns/driver:570.158.01-k-rhcos4.18"
TARGET = "quay.io/acme/nvidia/driver:570.158.01-k-rhcos4.18"


def push_env(auth_file: Path, **extra: str) -> dict[str, str]:
    return {
        "STAGING_IMAGE": STAGING,
        "IMAGE": TARGET,
        "EXPECTED_DIGEST": DIGEST,
        "PUSH_AUTH_FILE": str(auth_file),
        "TLS_VERIFY": "true",
        "FAKE_DIGEST": DIGEST,
        **extra,
    }


def test_push_driver_image(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    proc, result = run("push_driver_image.sh", tmp_path, push_env(auth_file))
    assert proc.returncode == 0, proc.stderr
    assert result == {
        "image": TARGET,
        "digest": DIGEST,
        "staging_image": STAGING,
        "signed": False,
        "signing_key_sha256": "",
    }
    before, copy, inspect = calls(tmp_path)
    assert before == inspect  # is it already there (a retry of a killed try)? no: copied
    assert copy == (
        f"copy --retry-times 3 --preserve-digests --dest-authfile {auth_file} --src-tls-verify=true "
        f"--dest-tls-verify=true docker://{STAGING} docker://{TARGET}"
    )
    assert (
        inspect
        == f"inspect --authfile {auth_file} --tls-verify=true --format {{{{.Digest}}}} docker://{TARGET}"
    )


def test_push_reads_staging_with_the_service_account_token(
    tmp_path: Path, bin_dir: Path, auth_file: Path
) -> None:
    # Keep a copy of the source auth file: the script deletes its temp file on exit.
    fake(
        bin_dir,
        "skopeo",
        'for ((i = 1; i <= $#; i++)); do if [[ "${!i}" == --src-authfile ]]; then j=$((i + 1)); '
        'cp "${!j}" "$FAKE_SRC_AUTH"; fi; done\n' + FAKE_SKOPEO,
    )
    token = tmp_path / "token"
    token.write_text("planted-sa-token-XYZ")
    env = push_env(auth_file, SA_TOKEN_FILE=str(token), FAKE_SRC_AUTH=str(tmp_path / "src-auth.json"))
    proc, result = run("push_driver_image.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result["digest"] == DIGEST
    log = "\n".join(calls(tmp_path))
    assert "--src-authfile" in log
    assert "planted-sa-token-XYZ" not in log + proc.stdout + proc.stderr  # never on a command line
    auth = json.loads((tmp_path / "src-auth.json").read_text())
    registry = "image-registry.openshift-image-registry.svc:5000"
    assert base64.b64decode(auth["auths"][registry]["auth"]).decode() == "serviceaccount:planted-sa-token-XYZ"


def test_push_digest_mismatch(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    env = push_env(auth_file, FAKE_INSPECT_DIGEST=OTHER_DIGEST)
    proc, result = run("push_driver_image.sh", tmp_path, env)
    assert proc.returncode == 1
    assert result is None
    assert f"has digest {OTHER_DIGEST} after the copy, but the build produced {DIGEST}" in proc.stderr


def test_push_refused_by_the_registry(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    proc, result = run("push_driver_image.sh", tmp_path, push_env(auth_file, FAKE_COPY="denied"))
    assert proc.returncode == 1
    assert result is None
    assert "PRECOMPILED_DRIVERS_PUSH_SECRET" in proc.stderr
    assert [c.split()[0] for c in calls(tmp_path)] == ["inspect", "copy"]  # no inspect after a failed copy


def test_push_retry_finds_the_image_already_pushed(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    # An earlier try copied the image and was killed before reporting: the retry does not copy again.
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    proc, result = run("push_driver_image.sh", tmp_path, push_env(auth_file, FAKE_PUSHED="1"))
    assert proc.returncode == 0, proc.stderr
    assert result == {
        "image": TARGET,
        "digest": DIGEST,
        "staging_image": STAGING,
        "signed": False,
        "signing_key_sha256": "",
    }
    assert [c.split()[0] for c in calls(tmp_path)] == ["inspect", "inspect"]
    assert (
        f"{TARGET} already has digest {DIGEST} (pushed by an earlier try): not copied again." in proc.stdout
    )


def test_push_overwrites_a_target_with_another_digest(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    # The tag holds another build (a forced rebuild): copied, then the new digest is checked.
    fake(bin_dir, "skopeo", FAKE_SKOPEO)
    log = tmp_path / "calls.log"
    skopeo = bin_dir / "skopeo"
    # Before the copy the target answers with the old digest; after it, with the pushed one.
    skopeo.write_text(
        skopeo.read_text().replace(
            "echo 'level=fatal msg=\"reading manifest: manifest unknown\"' >&2\n          exit 1",
            f"echo {OTHER_DIGEST}",
        )
    )
    assert OTHER_DIGEST in skopeo.read_text()
    proc, result = run("push_driver_image.sh", tmp_path, push_env(auth_file))
    assert proc.returncode == 0, proc.stderr
    assert result["digest"] == DIGEST
    assert [c.split()[0] for c in log.read_text().splitlines()] == ["inspect", "copy", "inspect"]


# ----------------------------------------------------------------------------- inspect_cluster

NODE_LABELS = {
    "nvidia.com/gpu.present": "true",
    "feature.node.kubernetes.io/kernel-version.full": "5.14.0-427.50.1.el9_4.x86_64",
    "feature.node.kubernetes.io/system-os_release.ID": "rhcos",
    "feature.node.kubernetes.io/system-os_release.VERSION_ID": "4.18",
}
OPERATOR = {
    "metadata": {"name": "gpu-operator", "labels": {"olm.owner": "gpu-operator-certified.v26.7.0"}},
    "spec": {
        "template": {"spec": {"containers": [{"image": "nvcr.io/nvidia/gpu-operator@sha256:" + "c" * 64}]}}
    },
}
POLICY = {"metadata": {"name": "gpu-cluster-policy"}, "spec": {"driver": {"enabled": True}}}

FAKE_KUBECTL = """
case "$*" in
  "get nodes -l nvidia.com/gpu.present=true -o jsonpath="*) printf '%s' "$FAKE_NODES" ;;
  "get nodes -l nvidia.com/gpu.present=true -L"*) echo "NAME    STATUS" ;;
  "get deployment "*)
    [[ -n "${FAKE_OPERATOR:-}" ]] || { echo 'Error from server (NotFound)' >&2; exit 1; }
    printf '%s\\n' "$FAKE_OPERATOR" ;;
  "get clusterpolicy "*)
    [[ -n "${FAKE_POLICY:-}" ]] || { echo 'error: the server does not have the resource' >&2; exit 1; }
    printf '%s\\n' "$FAKE_POLICY" ;;
  "get nvidiadrivers -o json")
    [[ -n "${FAKE_NVD:-}" ]] || {
      echo "error: the server doesn't have a resource type \"nvidiadrivers\"" >&2; exit 1; }
    [[ "$FAKE_NVD" != forbidden ]] || { echo 'Error from server (Forbidden): nvidiadrivers' >&2; exit 1; }
    printf '%s\n' "$FAKE_NVD" ;;
  "get gpuclusters -o json")
    [[ -n "${FAKE_GC:-}" ]] || {
      echo "error: the server doesn't have a resource type \"gpuclusters\"" >&2; exit 1; }
    printf '%s\n' "$FAKE_GC" ;;
  *"{.status.desired.version}"*)
    if [[ -n "${FAKE_VERSION:-}" ]]; then printf '%s' "$FAKE_VERSION"; else echo 'NotFound' >&2; exit 1; fi ;;
  *"{.spec.channel}"*)
    if [[ -n "${FAKE_VERSION:-}" ]]; then printf 'stable-4.18'; else exit 1; fi ;;
  *) echo "unexpected kubectl $*" >&2; exit 99 ;;
esac
"""


def nodes_output(*names: str) -> str:
    """What kubectl prints for the script's jsonpath template: one object and a comma per node."""
    return "".join(json.dumps({"name": n, "labels": NODE_LABELS}, separators=(",", ":")) + "," for n in names)


def cluster_env(**extra: str) -> dict[str, str]:
    return {
        "POLICY_NAME": "gpu-cluster-policy",
        "OPERATOR_NAMESPACE": "nvidia-gpu-operator",
        "OPERATOR_DEPLOYMENT": "gpu-operator",
        **extra,
    }


def test_inspect_cluster(tmp_path: Path, bin_dir: Path) -> None:
    fake(bin_dir, "kubectl", FAKE_KUBECTL)
    env = cluster_env(
        FAKE_NODES=nodes_output("gpu-1", "gpu-2"),
        FAKE_OPERATOR=json.dumps(OPERATOR, indent=2),
        FAKE_POLICY=json.dumps(POLICY, indent=2),
        FAKE_VERSION="4.18.12",
    )
    proc, result = run("inspect_cluster.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result["nodes"] == [
        {"name": "gpu-1", "labels": NODE_LABELS},
        {"name": "gpu-2", "labels": NODE_LABELS},
        None,
    ]
    assert result["operator"] == OPERATOR
    assert result["policy"] == POLICY
    assert (result["cluster_version"], result["cluster_channel"]) == ("4.18.12", "stable-4.18")
    # And the pipeline can read it.
    state = parse_cluster(result)
    assert state.operator_version == "v26.7.0"
    assert [n.name for n in state.nodes] == ["gpu-1", "gpu-2"]
    assert "get deployment gpu-operator -n nvidia-gpu-operator -o json" in calls(tmp_path)
    assert "get clusterpolicy gpu-cluster-policy -o json" in calls(tmp_path)


def test_inspect_cluster_without_operator_policy_or_version(tmp_path: Path, bin_dir: Path) -> None:
    fake(bin_dir, "kubectl", FAKE_KUBECTL)
    proc, result = run("inspect_cluster.sh", tmp_path, cluster_env(FAKE_NODES=""))
    assert proc.returncode == 0, proc.stderr
    assert result == {
        "nodes": [None],
        "operator": None,
        "policy": None,
        "cluster_version": "",
        "cluster_channel": "",
        "nvidia_drivers": None,
        "gpu_clusters": None,
        "signing_keys": {"module": "", "image": ""},  # no Secret mounted: no key
    }
    assert "operator_version" in proc.stderr
    assert "the rollout cannot" in proc.stderr


def test_inspect_cluster_nvidiadriver_mode(tmp_path: Path, bin_dir: Path) -> None:
    fake(bin_dir, "kubectl", FAKE_KUBECTL)
    driver = {
        "metadata": {"name": "pool-a", "uid": "u1"},
        "spec": {"usePrecompiled": True, "nodeSelector": {}},
    }
    env = cluster_env(
        FAKE_NODES=nodes_output("gpu-1"),
        FAKE_OPERATOR=json.dumps(OPERATOR),
        FAKE_NVD=json.dumps({"kind": "NVIDIADriverList", "items": [driver]}, indent=2),
        FAKE_GC=json.dumps({"kind": "GPUClusterList", "items": [{"metadata": {"name": "gpu-cluster"}}]}),
    )
    proc, result = run("inspect_cluster.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    state = parse_cluster(result)
    assert state.nvidia_drivers == (driver,)
    assert state.gpu_clusters == ("gpu-cluster",)
    assert state.policy is None
    # Another error than an absent CRD is not "no NVIDIADriver": the step fails and says why.
    proc, result = run("inspect_cluster.sh", tmp_path, {**env, "FAKE_NVD": "forbidden"})
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr


def test_inspect_cluster_fails_when_nodes_cannot_be_listed(tmp_path: Path, bin_dir: Path) -> None:
    fake(bin_dir, "kubectl", 'echo "Error from server (Forbidden)" >&2\nexit 1\n')
    proc, result = run("inspect_cluster.sh", tmp_path, cluster_env())
    assert proc.returncode != 0
    assert result is None
    assert "Forbidden" in proc.stderr


# ----------------------------------------------------------------------------- signing keys

KEY_DER = b"0\x82\x01\x0afake-DER-certificate-bytes"  # hashed as bytes: any content will do here
COSIGN_PUB = (
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfake\n-----END PUBLIC KEY-----\n"
)


def sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_inspect_cluster_reports_the_public_key_fingerprints(tmp_path: Path, bin_dir: Path) -> None:
    fake(bin_dir, "kubectl", FAKE_KUBECTL)
    der = tmp_path / "module" / "public_key.der"
    der.parent.mkdir()
    der.write_bytes(KEY_DER)
    pub = tmp_path / "image" / "cosign.pub"
    pub.parent.mkdir()
    pub.write_text(COSIGN_PUB)
    env = cluster_env(FAKE_NODES="", MODULE_SIGNING_PUBLIC_KEY=str(der), IMAGE_SIGNING_PUBLIC_KEY=str(pub))
    proc, result = run("inspect_cluster.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    # sha256 of the files as stored in the Secret (what `sha256sum public_key.der` prints).
    assert result["signing_keys"] == {"module": sha256_hex(KEY_DER), "image": sha256_hex(COSIGN_PUB.encode())}
    # An optional volume whose Secret is missing is an empty folder: no key, no failure.
    env = cluster_env(
        FAKE_NODES="",
        MODULE_SIGNING_PUBLIC_KEY=str(tmp_path / "absent" / "public_key.der"),
        IMAGE_SIGNING_PUBLIC_KEY=str(tmp_path / "absent" / "cosign.pub"),
    )
    proc, result = run("inspect_cluster.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result["signing_keys"] == {"module": "", "image": ""}


def signing_files(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "image-signing"
    secret.mkdir()
    (secret / "cosign.key").write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nplanted\n")
    (secret / "cosign.password").write_text("planted-passphrase-FEED")
    (secret / "cosign.pub").write_text(COSIGN_PUB)
    return {
        "SIGNING_KEY_FILE": str(secret / "cosign.key"),
        "SIGNING_PASSPHRASE_FILE": str(secret / "cosign.password"),
        "SIGNING_PUBLIC_KEY_FILE": str(secret / "cosign.pub"),
    }


# The fake keeps the registries.d folder the script hands to skopeo (a temp dir removed on exit).
KEEP_REGISTRIES_D = (
    'for ((i = 1; i <= $#; i++)); do if [[ "${!i}" == --registries.d ]]; then j=$((i + 1)); '
    'cp -r "${!j}" "$FAKE_REGISTRIES_D"; shift 2; break; fi; done\n'
)


def test_push_signs_by_digest_then_tags(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", KEEP_REGISTRIES_D + FAKE_SKOPEO)
    env = push_env(auth_file, FAKE_REGISTRIES_D=str(tmp_path / "registries.d"), **signing_files(tmp_path))
    proc, result = run("push_driver_image.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    key = tmp_path / "image-signing"
    assert result == {
        "image": TARGET,
        "digest": DIGEST,
        "staging_image": STAGING,
        "signed": True,
        "signing_key_sha256": sha256_hex(COSIGN_PUB.encode()),
    }
    sign, tag, inspect = calls(tmp_path)
    repository = TARGET.rsplit(":", 1)[0]
    # 1. pushed by digest only, signed (sigstore, stored as an attachment in the target registry)
    assert sign.startswith("--registries.d ")
    assert sign.split(" ", 2)[2] == (
        f"copy --retry-times 3 --preserve-digests --dest-authfile {auth_file} --src-tls-verify=true "
        f"--dest-tls-verify=true --sign-by-sigstore-private-key {key / 'cosign.key'} "
        f"--sign-passphrase-file {key / 'cosign.password'} --sign-identity {TARGET} "
        f"docker://{STAGING} docker://{repository}@{DIGEST}"
    )
    assert (tmp_path / "registries.d" / "sigstore.yaml").read_text() == (
        "docker:\n  quay.io:\n    use-sigstore-attachments: true\n"
    )
    # 2. only then tagged (the signature belongs to the digest: nothing to copy for the tag)
    assert tag == (
        f"copy --retry-times 3 --preserve-digests --remove-signatures --src-authfile {auth_file} "
        f"--dest-authfile {auth_file} --src-tls-verify=true --dest-tls-verify=true "
        f"docker://{repository}@{DIGEST} docker://{TARGET}"
    )
    assert inspect.startswith("inspect ")
    # The key and its passphrase travel as file paths, never as values.
    assert "planted" not in "\n".join(calls(tmp_path)) + proc.stdout + proc.stderr


def test_push_that_cannot_sign_publishes_no_tag(tmp_path: Path, bin_dir: Path, auth_file: Path) -> None:
    fake(bin_dir, "skopeo", KEEP_REGISTRIES_D + FAKE_SKOPEO)
    env = push_env(
        auth_file,
        FAKE_COPY="denied",
        FAKE_REGISTRIES_D=str(tmp_path / "registries.d"),
        **signing_files(tmp_path),
    )
    proc, result = run("push_driver_image.sh", tmp_path, env)
    assert proc.returncode == 1
    assert result is None
    assert f"(denied: requested access is refused); {TARGET} was not tagged" in proc.stderr
    assert "PRECOMPILED_DRIVERS_IMAGE_SIGNING_SECRET" in proc.stderr
    assert len(calls(tmp_path)) == 1  # the signed push only: no tag, no inspect


# ----------------------------------------------------------------------------- build_driver_image

# NVIDIA's recipe fetched with git: the fake creates the build folder the checkout would hold.
FAKE_GIT = """
if [[ "$3" == checkout ]]; then mkdir -p "$2/$FAKE_BUILD_DIR"; fi
if [[ "$3" == init ]]; then mkdir -p "$2/$5"; fi
"""
# `make -C <build dir> ... image`: records what NVIDIA's Dockerfile would COPY from the build folder.
FAKE_MAKE = """
dir="$2"
for f in private_key.priv public_key.der; do
  if [[ -f "$dir/$f" ]]; then echo "make saw $f $(sha256sum "$dir/$f" | cut -d' ' -f1)" >>"$FAKE_LOG"; fi
done
"""
FAKE_PODMAN = """
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == --digestfile ]]; then j=$((i + 1)); echo "$FAKE_DIGEST" >"${!j}"; fi
done
"""


def build_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DRIVER_REPO_URL": "https://github.com/NVIDIA/gpu-driver-container.git",
        "DRIVER_REPO_REF": "06a208ca9747c82b1ba99b76ecdcf2469b0a0207",
        "BUILD_DIR": "rhel9/precompiled",
        "FAKE_BUILD_DIR": "rhel9/precompiled",
        "DRIVER_VERSION": "570.158.01",
        "KERNEL_VERSION": "5.14.0-427.50.1.el9_4.x86_64",
        "RHEL_VERSION": "9.4",
        "CUDA_VERSION": "12.8.1",
        "OS_TAG": "rhcos4.18",
        "BUILD_ARCH": "x86_64",
        "DRIVER_OPEN": "true",
        "KERNEL_MODULE_TYPE": "open",
        "MODULE_TYPE_LABEL": "io.github.precompiled-drivers.kernel-module-type",
        "MODULE_KEY_LABEL": "io.github.precompiled-drivers.module-signing-key-sha256",
        "PROVENANCE_LABELS": "io.github.precompiled-drivers.kernel-version=5.14.0-427.50.1.el9_4.x86_64\n"
        "io.github.precompiled-drivers.openshift-releases=4.18.12,4.18.14",
        "DRIVER_TOOLKIT_IMAGE": DTK,
        "STAGING_IMAGE": STAGING,
        "IMAGE": TARGET,
        "TAG": TARGET.rsplit(":", 1)[1],
        "PULL_SECRET_FILE": str(tmp_path / "pull"),
        "RHSM_ORG_FILE": str(tmp_path / "org"),
        "RHSM_ACTIVATIONKEY_FILE": str(tmp_path / "key"),
        "CONTAINERS_STORAGE": str(tmp_path / "storage"),
        "TMPDIR": str(tmp_path / "tmp"),
        "FAKE_DIGEST": DIGEST,
        **extra,
    }


@pytest.fixture
def build_tools(tmp_path: Path, bin_dir: Path) -> Path:
    fake(bin_dir, "git", FAKE_GIT)
    fake(bin_dir, "make", FAKE_MAKE)
    fake(bin_dir, "podman", FAKE_PODMAN)
    (tmp_path / "tmp").mkdir()
    return bin_dir


def module_keys(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "module-signing"
    folder.mkdir()
    contents = {"private_key.priv": b"planted-module-private-key-0B5E", "public_key.der": KEY_DER}
    for name in names:
        (folder / name).write_bytes(contents[name])
    return folder


def label_args(tmp_path: Path) -> list[str]:
    [build] = [c for c in calls(tmp_path) if " build " in f" {c} "]
    words = build.split(" --label ")[1:]
    return [w.split(" --tag ")[0] for w in words]


def test_build_signs_modules_with_the_mounted_key_pair(tmp_path: Path, build_tools: Path) -> None:
    keys = module_keys(tmp_path, "private_key.priv", "public_key.der")
    env = build_env(tmp_path, MODULE_SIGNING_DIR=str(keys), REQUIRE_MODULE_SIGNING="true")
    proc, result = run("build_driver_image.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    fingerprint = sha256_hex(KEY_DER)
    log = calls(tmp_path)
    # Both files were in the build folder when NVIDIA's Makefile ran (its Dockerfile COPYs them from there).
    assert f"make saw public_key.der {fingerprint}" in log
    assert f"make saw private_key.priv {sha256_hex(b'planted-module-private-key-0B5E')}" in log
    assert result["module_key_sha256"] == fingerprint
    assert label_args(tmp_path) == [
        "io.github.precompiled-drivers.kernel-module-type=open",
        f"io.github.precompiled-drivers.module-signing-key-sha256={fingerprint}",
        "io.github.precompiled-drivers.kernel-version=5.14.0-427.50.1.el9_4.x86_64",
        "io.github.precompiled-drivers.openshift-releases=4.18.12,4.18.14",
    ]
    # The private key is gone from the work folder once the build is over, and was never printed.
    assert not list((tmp_path / "tmp").rglob("private_key.priv"))
    assert "planted-module-private-key" not in proc.stdout + proc.stderr + "\n".join(log)


def test_build_without_key_uses_nvidias_throwaway_key_and_says_so(tmp_path: Path, build_tools: Path) -> None:
    env = build_env(tmp_path, MODULE_SIGNING_DIR=str(tmp_path / "empty-optional-volume"))
    proc, result = run("build_driver_image.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert result["module_key_sha256"] == ""
    assert "throw-away key" in proc.stdout
    assert not [c for c in calls(tmp_path) if c.startswith("make saw")]
    from precompiled_drivers.signing import THROWAWAY_KEY

    assert f"io.github.precompiled-drivers.module-signing-key-sha256={THROWAWAY_KEY}" in label_args(tmp_path)


@pytest.mark.parametrize(
    ("files", "required", "error"),
    [
        ((), "true", "module signing is required (PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING=true)"),
        (("public_key.der",), "false", "holds only one of private_key.priv and public_key.der"),
        (("private_key.priv",), "true", "holds only one of private_key.priv and public_key.der"),
    ],
)
def test_build_refuses_without_a_whole_key_pair(
    tmp_path: Path, build_tools: Path, files: tuple[str, ...], required: str, error: str
) -> None:
    keys = module_keys(tmp_path, *files)
    env = build_env(tmp_path, MODULE_SIGNING_DIR=str(keys), REQUIRE_MODULE_SIGNING=required)
    proc, result = run("build_driver_image.sh", tmp_path, env)
    assert proc.returncode == 2
    assert result is None
    assert error in proc.stderr
    assert calls(tmp_path) == []  # refused before fetching or building anything
