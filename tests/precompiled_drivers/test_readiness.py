"""Upgrade readiness: a release is ready when every image the operator may pull for it is published."""

from __future__ import annotations

from precompiled_drivers import readiness
from precompiled_drivers.plan import BuildSpec

REPO = "quay.io/acme/nvidia"
K18, K19 = "5.14.0-427.50.1.el9_4.x86_64", "5.14.0-570.12.1.el9_6.x86_64"


def build(
    kernel: str, releases: tuple[str, ...], tag_os: str, other_os: str, driver: str = "570.158.01"
) -> BuildSpec:
    tag = f"{driver}-{kernel}-{tag_os}"
    return BuildSpec(
        driver_version=driver,
        kernel=kernel,
        rhel_version="9.4",
        os_tag=tag_os,
        os_tag_rule="rule",
        build_arch="x86_64",
        build_dir="rhel9",
        tag=tag,
        image=f"{REPO}:{tag}",
        staging_image=f"staging:{tag}",
        dtk_image="dtk",
        releases=releases,
        aliases=(f"{REPO}:{driver}-{kernel}-{other_os}",),
    )


B18 = build(K18, ("4.18.12", "4.18.14"), "rhcos4.18", "rhel9")
B19 = build(K19, ("4.19.3",), "rhel9", "rhcos4.18")
OLD_DRIVER = build(K19, ("4.19.3",), "rhel9", "rhcos4.18", driver="550.90.07")


def plan(available: dict[str, str], rejected: list | None = None) -> list[readiness.ReleaseReadiness]:
    return readiness.release_readiness(
        [B19, B18, OLD_DRIVER],
        rejected or [],
        available,
        driver_version="570.158.01",
        cluster_version="4.18.12",
        requested=["4.19.3"],
    )


def test_ready_when_the_image_and_every_os_tag_copy_are_published() -> None:
    everything = {ref: "sha256:1" for b in (B18, B19) for ref in (b.image, *b.aliases)}
    out = plan(everything)
    assert [(r.version, r.role, r.ready) for r in out] == [
        ("4.18.12", "current release", True),
        ("4.18.14", "upgrade target", True),
        ("4.19.3", "requested", True),
    ]
    assert out[1].line() == "4.18.14-x86_64 (upgrade target): ready (2 image(s) in the registry)"


def test_a_missing_os_tag_copy_makes_a_release_not_ready_and_names_it() -> None:
    available = {B18.image: "sha256:1", B18.aliases[0]: "sha256:1", B19.image: "sha256:2"}
    out = {r.version: r for r in plan(available)}
    assert out["4.18.14"].ready and not out["4.19.3"].ready
    assert out["4.19.3"].missing == B19.aliases
    assert out["4.19.3"].line() == f"4.19.3-x86_64 (requested): NOT ready: missing {B19.aliases[0]}"
    # Only the rollout driver version counts: the older driver's images are not asked for.
    assert OLD_DRIVER.image not in out["4.19.3"].images


def test_an_empty_digest_is_not_published() -> None:
    out = {r.version: r for r in plan({B18.image: "", B18.aliases[0]: "sha256:1"})}
    assert out["4.18.14"].missing == (B18.image,)


def test_a_release_left_out_is_not_ready_with_its_reason() -> None:
    rejected = [{"version": "4.20.0", "arch": "x86_64", "error": "no kernel in the toolkit"}]
    out = plan({}, rejected)[-1]
    assert (out.version, out.ready, out.role) == ("4.20.0", False, "upgrade target")
    assert out.line() == (
        "4.20.0-x86_64 (upgrade target): NOT ready: its driver toolkit is unusable (no kernel in the toolkit)"
    )


def test_a_long_missing_list_is_cut() -> None:
    r = readiness.ReleaseReadiness("4.19.3", "x86_64", "upgrade target", False, (), ("a", "b", "c", "d", "e"))
    assert r.line().endswith("missing a, b, c and 2 more")


def test_document_lines_and_configmap_agree() -> None:
    doc = readiness.summary(plan({B18.image: "d", B18.aliases[0]: "d"}), "570.158.01")
    assert readiness.lines(doc)[1].startswith("4.18.14-x86_64 (upgrade target): ready")
    cm = readiness.configmap(doc, namespace="ns", run_id="manual__1")
    assert cm["metadata"]["name"] == "precompiled-drivers-readiness" and cm["metadata"]["namespace"] == "ns"
    assert cm["data"]["4.18.14-x86_64"] == "ready (2 image(s) in the registry)"
    assert cm["data"]["4.19.3-x86_64"].startswith("NOT ready: missing ")
    assert set(cm["data"]) == {"readiness.json", "4.18.12-x86_64", "4.18.14-x86_64", "4.19.3-x86_64"}
    assert cm["metadata"]["annotations"]["precompiled-drivers.github.io/run-id"] == "manual__1"
