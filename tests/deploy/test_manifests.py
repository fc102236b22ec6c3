"""deploy/: the rights each step's ServiceAccount gets are exactly the ones the step uses.

EXPECTED below is the single statement of truth (the team's contract); the manifests, and the table in
deploy/README.md, must say the same thing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRETS = DEPLOY / "secrets"
KUBECTL = Path(sys.executable).parent / "kubectl"

PIPELINE_NS = "nvidia-precompiled-drivers"
OPERATOR_NS = "nvidia-gpu-operator"
CLUSTER = "<cluster>"  # scope of a ClusterRoleBinding
SCC_NAME = "precompiled-drivers-build"

Grant = tuple[str, str, str, str, str | None]  # (scope, apiGroup, resource, verb, resourceName)


def grants(scope: str, group: str, resource: str, verbs: str, name: str | None = None) -> set[Grant]:
    """Every (scope, apiGroup, resource, verb, resourceName) tuple of one rule."""
    return {(scope, group, resource, verb, name) for verb in verbs.split()}


# step (Airflow task id) -> (ServiceAccount, everything it may do)
EXPECTED: dict[str, tuple[str, set[Grant]]] = {
    "resolve_driver_toolkit": ("precompiled-drivers-resolve", set()),
    "inspect_driver_toolkit": ("precompiled-drivers-inspect-dtk", set()),
    "inspect_cluster": (
        "precompiled-drivers-inspect-cluster",
        grants(CLUSTER, "", "nodes", "list")
        | grants(CLUSTER, "nvidia.com", "clusterpolicies", "get")
        | grants(CLUSTER, "nvidia.com", "nvidiadrivers", "list")
        | grants(CLUSTER, "nvidia.com", "gpuclusters", "list")
        | grants(CLUSTER, "config.openshift.io", "clusterversions", "get")
        | grants(OPERATOR_NS, "apps", "deployments", "get"),
    ),
    "check_published_images": ("precompiled-drivers-check-images", set()),
    "build_driver_image": (
        "precompiled-drivers-build",
        grants(PIPELINE_NS, "image.openshift.io", "imagestreams", "create")
        | grants(PIPELINE_NS, "image.openshift.io", "imagestreams/layers", "get update")
        | grants(PIPELINE_NS, "security.openshift.io", "securitycontextconstraints", "use", SCC_NAME),
    ),
    "push_driver_image": (
        "precompiled-drivers-push",
        grants(PIPELINE_NS, "image.openshift.io", "imagestreams/layers", "get"),
    ),
    "publish_os_tags": ("precompiled-drivers-publish-tags", set()),
    "patch_cluster_policy": (
        "precompiled-drivers-patch",
        grants(CLUSTER, "nvidia.com", "clusterpolicies", "get patch"),
    ),
    "roll_out_nvidia_drivers": (
        "precompiled-drivers-roll-out-nvidia-drivers",
        grants(CLUSTER, "nvidia.com", "nvidiadrivers", "get patch create delete")
        | grants(OPERATOR_NS, "", "pods", "list")
        | grants(OPERATOR_NS, "apps", "daemonsets", "list")
        | grants(PIPELINE_NS, "", "pods", "create get delete")
        | grants(PIPELINE_NS, "", "pods/log", "get"),
    ),
    "verify_rollout": (
        "precompiled-drivers-verify",
        grants(CLUSTER, "nvidia.com", "clusterpolicies", "get") | grants(OPERATOR_NS, "", "pods", "list"),
    ),
    "check_gpu_workload": (
        "precompiled-drivers-gpu-check",
        grants(PIPELINE_NS, "", "pods", "create get delete") | grants(PIPELINE_NS, "", "pods/log", "get"),
    ),
    "rollback_cluster_policy": (
        "precompiled-drivers-rollback",
        grants(CLUSTER, "nvidia.com", "clusterpolicies", "get patch"),
    ),
    "record_readiness": (
        "precompiled-drivers-record-readiness",
        grants(PIPELINE_NS, "", "configmaps", "get update", "precompiled-drivers-readiness")
        | grants(PIPELINE_NS, "", "configmaps", "create"),
    ),
    "(airflow connection)": (
        "precompiled-drivers-airflow",
        grants(PIPELINE_NS, "", "pods", "create get list delete patch")
        | grants(PIPELINE_NS, "", "pods/log", "get")
        | grants(PIPELINE_NS, "", "pods/exec", "create get")
        | grants(PIPELINE_NS, "", "events", "list watch"),
    ),
}
SA_RIGHTS: dict[str, set[Grant]] = dict(EXPECTED.values())
NO_RIGHTS = {sa for sa, rights in SA_RIGHTS.items() if not rights}


def load(path: Path) -> list[dict[str, Any]]:
    """All YAML documents of a file, empty ones dropped."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def applied_objects() -> list[dict[str, Any]]:
    """Everything `oc apply -k deploy/` creates: the kustomization's resources, read from the files."""
    kustomization = load(DEPLOY / "kustomization.yaml")[0]
    return [doc for rel in kustomization["resources"] for doc in load(DEPLOY / rel)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in applied_objects() if o["kind"] == kind]


def strings(node: Any) -> Iterator[str]:
    """Every string (keys included) anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def ident(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def granted() -> dict[str, set[Grant]]:
    """What the bindings in deploy/ actually grant, per ServiceAccount name."""
    roles = {ident(o): o for o in applied_objects() if o["kind"] in ("Role", "ClusterRole")}
    result: dict[str, set[Grant]] = {}
    for binding in of_kind("RoleBinding") + of_kind("ClusterRoleBinding"):
        ref = binding["roleRef"]
        namespaced = binding["kind"] == "RoleBinding"
        scope = binding["metadata"]["namespace"] if namespaced else CLUSTER
        role = roles[(ref["kind"], scope if namespaced and ref["kind"] == "Role" else "", ref["name"])]
        (subject,) = binding["subjects"]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            result.setdefault(subject["name"], set()).add(
                                (scope, group, resource, verb, name)
                            )
    return result


def test_every_file_parses_into_named_objects() -> None:
    files = manifest_files()
    assert len(files) >= 10
    for path in [*files, DEPLOY / "kustomization.yaml"]:
        docs = load(path)
        assert docs, path
        for doc in docs:
            assert {"apiVersion", "kind"} <= doc.keys(), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


def test_kustomization_applies_every_manifest_but_the_secret_templates() -> None:
    kustomization = load(DEPLOY / "kustomization.yaml")[0]
    assert "namespace" not in kustomization  # it would pull the GPU Operator Roles into the pipeline ns
    listed = {DEPLOY / rel for rel in kustomization["resources"]}
    assert listed == {p for p in manifest_files() if SECRETS not in p.parents}
    assert not [o for o in applied_objects() if o["kind"] == "Secret"]


def test_kubectl_kustomize_renders_the_same_objects() -> None:
    assert KUBECTL.is_file(), f"kubectl missing at {KUBECTL}"
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    rendered = [doc for doc in yaml.safe_load_all(out) if doc]
    assert sorted(map(ident, rendered)) == sorted(map(ident, applied_objects()))


def test_namespace_and_service_accounts() -> None:
    assert [o["metadata"]["name"] for o in of_kind("Namespace")] == [PIPELINE_NS]
    accounts = of_kind("ServiceAccount")
    assert sorted(o["metadata"]["name"] for o in accounts) == sorted(SA_RIGHTS)
    assert {o["metadata"]["namespace"] for o in accounts} == {PIPELINE_NS}
    for account in accounts:
        name = account["metadata"]["name"]
        # No API rights, no token: a compromised step has nothing to present to the API server.
        if name in NO_RIGHTS:
            assert account.get("automountServiceAccountToken") is False, name
        else:
            assert account.get("automountServiceAccountToken") is not False, name


def test_bindings_grant_exactly_the_table() -> None:
    actual = granted()
    for sa, expected in SA_RIGHTS.items():
        assert actual.get(sa, set()) == expected, sa
    assert set(actual) <= set(SA_RIGHTS)


def test_each_binding_binds_exactly_one_step_service_account() -> None:
    bindings = of_kind("RoleBinding") + of_kind("ClusterRoleBinding")
    assert bindings
    for binding in bindings:
        subjects = binding["subjects"]
        assert len(subjects) == 1, binding["metadata"]["name"]
        assert subjects[0]["kind"] == "ServiceAccount"
        assert subjects[0]["namespace"] == PIPELINE_NS
        assert subjects[0]["name"] in SA_RIGHTS
        assert subjects[0]["name"] not in NO_RIGHTS
        if binding["kind"] == "RoleBinding":
            # A RoleBinding to a ClusterRole would be easy to misread; every namespaced grant is a Role.
            assert binding["roleRef"]["kind"] == "Role"
            assert binding["metadata"]["namespace"] in (PIPELINE_NS, OPERATOR_NS)
        else:
            assert binding["roleRef"]["kind"] == "ClusterRole"


def test_every_role_is_bound_once_and_rules_are_plain() -> None:
    bindings = of_kind("RoleBinding") + of_kind("ClusterRoleBinding")
    refs = [
        (b["roleRef"]["kind"], b["metadata"].get("namespace", ""), b["roleRef"]["name"]) for b in bindings
    ]
    roles = of_kind("Role") + of_kind("ClusterRole")
    assert sorted(refs) == sorted(map(ident, roles))
    for role in roles:
        assert role["rules"], role["metadata"]["name"]
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            assert rule["apiGroups"] and rule["resources"] and rule["verbs"], rule


def test_no_wildcards_anywhere() -> None:
    for path in manifest_files():
        for doc in load(path):
            assert not [s for s in strings(doc) if "*" in s], path


def test_scc_is_granted_only_to_the_build_service_account() -> None:
    (scc,) = of_kind("SecurityContextConstraints")
    assert scc["metadata"]["name"] == SCC_NAME
    assert not scc["users"]
    assert not scc["groups"]
    scc_grants = {
        (sa, grant)
        for sa, rights in granted().items()
        for grant in rights
        if grant[2] == "securitycontextconstraints"
    }
    assert scc_grants == {
        (
            "precompiled-drivers-build",
            (PIPELINE_NS, "security.openshift.io", "securitycontextconstraints", "use", SCC_NAME),
        )
    }


def test_build_scc_is_not_privileged() -> None:
    (scc,) = of_kind("SecurityContextConstraints")
    assert scc["allowPrivilegedContainer"] is False
    for host in (
        "allowHostDirVolumePlugin",
        "allowHostIPC",
        "allowHostNetwork",
        "allowHostPID",
        "allowHostPorts",
    ):
        assert scc[host] is False, host
    assert set(scc["allowedCapabilities"]) == {"SETUID", "SETGID", "SETFCAP"}
    assert not scc["defaultAddCapabilities"]
    assert "hostPath" not in scc["volumes"]
    assert set(scc["volumes"]) <= {"configMap", "downwardAPI", "emptyDir", "ephemeral", "projected", "secret"}
    # runtime/default first: it is what a pod that does not ask gets.
    assert scc["seccompProfiles"] == ["runtime/default", "unconfined"]
    assert scc["runAsUser"] == {"type": "MustRunAs", "uid": 1000}  # never root on the node
    assert scc["seLinuxContext"]["type"] == "MustRunAs"
    assert scc["priority"] is None  # never preferred over restricted-v2 for pods that do not need it


SECRET_TEMPLATES = {
    "precompiled-drivers-pull-secret": ("kubernetes.io/dockerconfigjson", {".dockerconfigjson"}),
    "precompiled-drivers-rhsm": ("Opaque", {"org", "activationkey"}),
    "precompiled-drivers-push-secret": ("kubernetes.io/dockerconfigjson", {".dockerconfigjson"}),
}


def secret_templates() -> dict[str, tuple[Path, dict[str, Any]]]:
    found = {}
    for path in sorted(SECRETS.glob("*.yaml")):
        for doc in load(path):
            assert doc["kind"] == "Secret", path
            found[doc["metadata"]["name"]] = (path, doc)
    return found


def test_secret_templates_exist_with_their_types_and_keys() -> None:
    templates = secret_templates()
    assert set(templates) == set(SECRET_TEMPLATES)
    for name, (path, secret) in templates.items():
        kind, keys = SECRET_TEMPLATES[name]
        assert secret["type"] == kind
        assert secret["metadata"]["namespace"] == PIPELINE_NS
        assert "data" not in secret  # readable placeholders only, nothing hidden in base64
        assert set(secret["stringData"]) == keys
        assert "EXAMPLE ONLY" in path.read_text()
    # Secrets live only under deploy/secrets/.
    outside = [
        p for p in manifest_files() if SECRETS not in p.parents for d in load(p) if d["kind"] == "Secret"
    ]
    assert not outside


@pytest.mark.parametrize("name", sorted(SECRET_TEMPLATES))
def test_secret_templates_hold_only_placeholders(name: str) -> None:
    _, secret = secret_templates()[name]
    for key, value in secret["stringData"].items():
        if key == ".dockerconfigjson":
            auths = json.loads(value)["auths"]
            assert auths
            for registry, entry in auths.items():
                assert set(entry) == {"auth"}, registry
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                assert user.startswith("PLACEHOLDER_"), registry
                assert password.startswith("PLACEHOLDER_"), registry
        else:
            assert value.startswith("PLACEHOLDER_"), key


def test_readme_table_matches_the_contract() -> None:
    rows = [
        [c.strip() for c in ln.strip().strip("|").split("|")]
        for ln in (DEPLOY / "README.md").read_text().splitlines()
        if ln.startswith("| ")
    ]
    table = {cells[1].strip("`"): cells for cells in rows if len(cells) == 3}
    for step, (sa, rights) in EXPECTED.items():
        task, _, may_do = table[sa]
        assert task == step, sa
        if not rights:
            assert may_do == "none", sa
        for _scope, group, resource, verb, name in rights:
            assert f"`{resource}`" in may_do, (sa, resource)
            assert verb in may_do, (sa, verb)
            assert group in may_do, (sa, group)
            assert name is None or name in may_do, (sa, name)


# --- the contract with the DAG: every step pod runs as the ServiceAccount this table names ---

SECCOMP_SCC_NAMES = {"RuntimeDefault": "runtime/default", "Unconfined": "unconfined"}
# SCC volume names -> the V1Volume attribute holding that kind of source.
SCC_VOLUME_FIELDS = {
    "configMap": "config_map",
    "downwardAPI": "downward_api",
    "emptyDir": "empty_dir",
    "ephemeral": "ephemeral",
    "projected": "projected",
    "secret": "secret",
}


@pytest.fixture(scope="module")
def step_pods() -> dict[str, dict[str, Any]]:
    """Pod settings of every KubernetesPodOperator task of the real DAG, by task id."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors
    dag = bag.dags["nvidia_precompiled_driver"]
    pods = {}
    for task in dag.tasks:
        kwargs = getattr(task, "partial_kwargs", None)  # mapped tasks keep their settings here
        if kwargs is None:
            if not isinstance(task, KubernetesPodOperator):
                continue
            kwargs = vars(task)
        elif "service_account_name" not in kwargs:
            continue
        else:  # a mapped step's partial carries its client models as one value (steps/base.PodModels)
            kwargs = {**kwargs, **kwargs["pod_models"].models}
        pods[task.task_id] = kwargs
    return pods


def test_every_step_pod_runs_as_its_service_account(step_pods: dict[str, dict[str, Any]]) -> None:
    steps = {step: sa for step, (sa, _) in EXPECTED.items() if not step.startswith("(")}
    assert set(step_pods) == set(steps)
    for step, sa in steps.items():
        assert step_pods[step]["service_account_name"] == sa, step
        # A token only where the table grants API rights (build and push: the registry credential).
        assert step_pods[step]["automount_service_account_token"] is bool(SA_RIGHTS[sa]), step


def test_build_pod_is_admitted_by_the_build_scc(step_pods: dict[str, dict[str, Any]]) -> None:
    (scc,) = of_kind("SecurityContextConstraints")
    build = step_pods["build_driver_image"]
    ctx = build["container_security_context"]
    assert not ctx.privileged
    assert ctx.run_as_user == scc["runAsUser"]["uid"]
    assert set(ctx.capabilities.add or []) <= set(scc["allowedCapabilities"])
    drops = set(ctx.capabilities.drop or [])
    assert "ALL" in drops or set(scc["requiredDropCapabilities"]) <= drops
    assert SECCOMP_SCC_NAMES[ctx.seccomp_profile.type] in scc["seccompProfiles"]
    if ctx.allow_privilege_escalation:
        assert scc["allowPrivilegeEscalation"] is True
    volume_kinds = {
        key
        for volume in build["volumes"]
        for key, value in volume.to_dict().items()
        if key != "name" and value is not None
    }
    assert volume_kinds <= {SCC_VOLUME_FIELDS[v] for v in scc["volumes"]}
