"""deploy/rbac grants each step exactly the verbs its script uses, derived from the scripts themselves.

``tests/deploy/test_manifests.py`` holds the manifests to a hand-written table; this test derives the
table from the code instead, so a script that stops (or starts) using a verb fails here:
- step -> ServiceAccount and script: from the step modules (the pod specs the DAG runs);
- script -> API calls: every ``kubectl get|list|patch|...`` line (``kubectl get <kind> <name>`` is a get,
  without a name a list; ``--local`` makes no call);
- registry rights: a script that pushes to or pulls from the internal registry with its own token needs
  what OpenShift's ``system:image-builder`` / ``system:image-puller`` roles grant for that;
- the build pod's SCC ``use``: from the ``openshift.io/required-scc`` annotation of its pod;
- the Airflow connection: what KubernetesPodOperator 10.25 calls (table below, each verb with its reason).
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import script

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "rbac"
PIPELINE_NS = "nvidia-precompiled-drivers"
OPERATOR_NS = "nvidia-gpu-operator"
CLUSTER = "<cluster>"

Grant = tuple[str, str, str, str]  # (scope, apiGroup, resource, verb)

# kubectl's names -> (apiGroup, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "node": ("", "nodes", False),
    "nodes": ("", "nodes", False),
    "pod": ("", "pods", True),
    "pods": ("", "pods", True),
    "deployment": ("apps", "deployments", True),
    "deployments": ("apps", "deployments", True),
    "daemonsets": ("apps", "daemonsets", True),
    "clusterpolicy": ("nvidia.com", "clusterpolicies", False),
    "clusterpolicies": ("nvidia.com", "clusterpolicies", False),
    "nvidiadriver": ("nvidia.com", "nvidiadrivers", False),
    "nvidiadrivers": ("nvidia.com", "nvidiadrivers", False),
    "gpuclusters": ("nvidia.com", "gpuclusters", False),
    "clusterversion": ("config.openshift.io", "clusterversions", False),
    "clusterversions": ("config.openshift.io", "clusterversions", False),
    "configmap": ("", "configmaps", True),
    "configmaps": ("", "configmaps", True),
}
# Namespace variables the scripts use, as the pods set them.
NAMESPACE_VARS = {
    '"$OPERATOR_NAMESPACE"': OPERATOR_NS,
    "$OPERATOR_NAMESPACE": OPERATOR_NS,
    '"$NAMESPACE"': PIPELINE_NS,
}
# Object names the scripts take from env vars, where the Role pins them with resourceNames.
NAME_VARS = {'"$CONFIGMAP_NAME"': "precompiled-drivers-readiness"}
# Calls that read the object from a file (`-f`): its kind and name, from the manifest the pipeline builds.
FILE_OBJECTS = {
    "record_readiness": ("configmap", '"$CONFIGMAP_NAME"'),
    "check_gpu_workload": ("pod", '"$name"'),  # one check pod per kernel (steps/check_gpu_workload.check_pod)
    # By file: the replacement NVIDIADriver or the original on undo (steps/roll_out_nvidia_drivers
    # .stage_env), and one GPU check pod per pool (steps/check_gpu_workload.check_pod).
    "roll_out_nvidia_drivers": {
        '"$file"': ("nvidiadriver", '"$name"'),
        '"$work/check.json"': ("pod", '"$name"'),
    },
}
# kubectl flags that take a value (so the value is not read as an object name).
VALUE_FLAGS = {"-o", "-n", "-l", "-L", "-p", "-c", "--type", "--namespace", "--selector", "-f"}

# The internal registry authorizes with the pod's token (OpenShift's system:image-builder and
# system:image-puller): push = imagestreams/layers get+update and imagestreams create (the stream is
# created on first push); pull = imagestreams/layers get.
REGISTRY_PUSH = {
    (PIPELINE_NS, "image.openshift.io", "imagestreams/layers", "get"),
    (PIPELINE_NS, "image.openshift.io", "imagestreams/layers", "update"),
    (PIPELINE_NS, "image.openshift.io", "imagestreams", "create"),
}
REGISTRY_PULL = {(PIPELINE_NS, "image.openshift.io", "imagestreams/layers", "get")}

# What KubernetesPodOperator (provider 10.25) does with the connection, verb by verb.
AIRFLOW_NEEDS: dict[Grant, str] = {
    (PIPELINE_NS, "", "pods", "create"): "PodManager.create_pod",
    (PIPELINE_NS, "", "pods", "get"): "PodManager.read_pod while polling",
    (PIPELINE_NS, "", "pods", "list"): "find_pod: re-attach to a running pod by labels on retry",
    (PIPELINE_NS, "", "pods", "delete"): "on_finish_action=delete_succeeded_pod",
    (PIPELINE_NS, "", "pods", "patch"): "patch_already_checked: label the finished pod",
    (PIPELINE_NS, "", "pods/log", "get"): "read_namespaced_pod_log (get_logs=True)",
    (PIPELINE_NS, "", "pods/exec", "create"): "XCom sidecar exec (websocket, Kubernetes >= 1.30)",
    (PIPELINE_NS, "", "pods/exec", "get"): "XCom sidecar exec (websocket, older API servers)",
    (PIPELINE_NS, "", "events", "list"): "read_pod_events (log_events_on_failure)",
    (PIPELINE_NS, "", "events", "watch"): "deferrable mode: the trigger watches the pod's events",
}

# Every pod step of the procedure: each has its module in steps/ (the maker of its pod).
STEPS = tuple(s.task_id for s in procedure.pod_steps())


def step_pod(task_id: str) -> dict[str, Any]:
    """ServiceAccount, script name, token and annotations of a step's pod, from its maker."""
    kwargs = importlib.import_module(f"precompiled_drivers.steps.{task_id}").pod(Settings())
    script_name = kwargs["arguments"][1]
    return {
        "service_account": kwargs["service_account_name"],
        "script": script_name,
        "token": kwargs["automount_service_account_token"],
        "annotations": kwargs.get("annotations") or {},
    }


def kubectl_calls(text: str) -> list[list[str]]:
    """Every kubectl command line of a script (continuations joined), as argument lists."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n\s*", " ", code)
    calls = []
    for match in re.finditer(r"\bkubectl(?:_retry)?\s+([a-z-]+\s+[^\n;|)]*)", joined):
        line_start = joined.rfind("\n", 0, match.start()) + 1
        if re.search(r"\b(echo|printf)\b", joined[line_start : match.start()]):
            continue  # a message that mentions kubectl, not a call
        words = shlex.split(match.group(1).replace("$(", "("), posix=False)
        if words and words[0] not in ('"$@"',):
            calls.append(words)
    return calls


def grants_of_call(
    words: list[str], file_object: tuple[str, str] | dict[str, tuple[str, str]] | None = None
) -> set[Grant]:
    """The RBAC (scope, group, resource, verb) one kubectl call needs.

    A name pinned by resourceNames is part of the resource (``configmaps/<name>``); ``create`` never is.
    ``file_object``: the kind and name a ``-f`` file holds, or one per file argument.
    """
    if "--local" in words:
        return set()
    verb, rest = words[0], words[1:]
    if "--raw" in rest:  # `kubectl <verb> --raw /apis/<group>/<version>/<plural>/<name>` (cluster-scoped)
        path = rest[rest.index("--raw") + 1].strip('"').split("/")
        assert path[1] == "apis" and len(path) == 6, f"a raw call the test cannot read: {words}"
        return {(CLUSTER, path[2], path[4], verb)}
    if isinstance(file_object, dict) and "-f" in rest:
        file_object = file_object[rest[rest.index("-f") + 1]]
    if verb == "logs":  # `kubectl logs <pod>`: the pod's log subresource
        rest = ["pod", *rest]
    if file_object and "-f" in rest:
        rest = [*file_object, *rest]
    kind, positional, namespace, i = None, [], PIPELINE_NS, 0
    while i < len(rest):
        word = rest[i]
        if word in VALUE_FLAGS:
            if word in ("-n", "--namespace"):
                namespace = NAMESPACE_VARS.get(rest[i + 1], rest[i + 1])
            i += 2
            continue
        if word.startswith("-") or re.match(r"\d*>", word):  # a flag, or a redirection (2>"$file")
            i += 1
            continue
        if kind is None:
            kind = word
        else:
            positional.append(word)
        i += 1
    assert kind in KINDS, f"unknown kind in kubectl call {words}: add it to KINDS"
    group, plural, namespaced = KINDS[kind]
    scope = namespace if namespaced else CLUSTER
    if verb == "get":
        verb = "get" if positional else "list"
    verb = {"replace": "update"}.get(verb, verb)
    if words[0] == "logs":
        plural, verb = f"{plural}/log", "get"
    if positional and positional[0] in NAME_VARS and verb != "create":
        plural = f"{plural}/{NAME_VARS[positional[0]]}"
    return {(scope, group, plural, verb)}


def script_needs(task_id: str) -> set[Grant]:
    pod = step_pod(task_id)
    text = script(pod["script"])  # what the pod runs: lib.sh, then the step's script
    needs: set[Grant] = set()
    for call in kubectl_calls(text):
        needs |= grants_of_call(call, FILE_OBJECTS.get(task_id))
    uses_token = "TOKEN_FILE" in text and pod["token"]
    if uses_token and re.search(r"\bpodman\b.*\bpush\b", text):
        needs |= REGISTRY_PUSH
    if uses_token and "--src-authfile" in text:
        needs |= REGISTRY_PULL
    scc = pod["annotations"].get("openshift.io/required-scc")
    if scc:
        needs.add((PIPELINE_NS, "security.openshift.io", f"securitycontextconstraints/{scc}", "use"))
    return needs


def rbac_grants() -> dict[str, set[Grant]]:
    """ServiceAccount -> every grant deploy/rbac gives it (resourceNames folded into the resource)."""
    docs = [d for f in sorted(RBAC.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    out: dict[str, set[Grant]] = {}
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = binding["roleRef"]
        role_ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_ns, ref["name"])]
        scope = binding["metadata"]["namespace"] if binding["kind"] == "RoleBinding" else CLUSTER
        for subject in binding["subjects"]:
            grants = out.setdefault(subject["name"], set())
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for name in rule.get("resourceNames") or [None]:
                            res = f"{resource}/{name}" if name else resource
                            grants |= {(scope, group, res, verb) for verb in rule["verbs"]}
    return out


def test_the_parser_reads_kubectl_lines() -> None:
    calls = kubectl_calls(
        'x="$(kubectl get pods -n "$OPERATOR_NAMESPACE" \\\n  -l app=a -o jsonpath="$C")"\n'
        'kubectl_retry patch clusterpolicy "$POLICY_NAME" --type=json -p "$PATCH_JSON"\n'
        "kubectl patch --local -f \"$f\" --type=merge -p '{}'\n"
        "kubectl get clusterversion version -o 'jsonpath={.spec.channel}'\n"
        'log="$(kubectl logs "$name" -n "$NAMESPACE" -c gpu-check --tail=200 2>&1 || true)"\n'
    )
    grants = set().union(*(grants_of_call(c) for c in calls))
    assert grants == {
        (OPERATOR_NS, "", "pods", "list"),
        (PIPELINE_NS, "", "pods/log", "get"),
        (CLUSTER, "nvidia.com", "clusterpolicies", "patch"),
        (CLUSTER, "config.openshift.io", "clusterversions", "get"),
    }


@pytest.mark.parametrize("task_id", sorted(STEPS))
def test_each_step_is_granted_exactly_what_its_script_uses(task_id: str) -> None:
    pod = step_pod(task_id)
    needs = script_needs(task_id)
    granted = rbac_grants().get(pod["service_account"], set())
    extra = granted - needs
    missing = needs - granted
    assert not extra, f"{task_id} ({pod['service_account']}) is granted verbs its script never uses: {extra}"
    assert not missing, f"{task_id} ({pod['service_account']}) lacks rights its script uses: {missing}"
    # A step without any API call runs without a token.
    api_needs = {g for g in needs if "securitycontextconstraints" not in g[2]}
    assert pod["token"] == bool(api_needs), (task_id, pod["token"], api_needs)


def test_the_airflow_connection_is_granted_exactly_what_the_operator_calls() -> None:
    granted = rbac_grants()["precompiled-drivers-airflow"]
    assert granted == set(AIRFLOW_NEEDS), {
        "extra": granted - set(AIRFLOW_NEEDS),
        "missing": set(AIRFLOW_NEEDS) - granted,
    }


def test_every_service_account_with_rights_is_a_step_or_airflow() -> None:
    known = {step_pod(t)["service_account"] for t in STEPS} | {"precompiled-drivers-airflow"}
    assert set(rbac_grants()) <= known
