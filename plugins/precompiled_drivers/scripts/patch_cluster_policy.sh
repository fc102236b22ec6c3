#!/usr/bin/env bash
# Apply a guarded JSON patch to the GPU Operator ClusterPolicy.
#
# The patch document is computed by the pipeline (precompiled_drivers.cluster_policy) from the policy it
# read; it starts with a `test` operation on that value, so if anyone changed the policy since, the API
# server rejects the whole patch (422) and nothing is overwritten.
#
# Env:  POLICY_NAME  ClusterPolicy name (cluster-scoped, usually gpu-cluster-policy)
#       PATCH_JSON   the RFC 6902 JSON patch document
#       DRY_RUN      true: only print what would be applied; false: apply
#       API_ATTEMPTS, API_RETRY_SECONDS  kubectl_retry (lib.sh): transient API errors are retried, a
#                    refusal (422 from the guard, 403, 404...) never.
# Result: {"previous_driver": <spec.driver before, or null>, "patched": true|false, "patched_at": "<UTC>"|null}
#         patched_at is 1970-01-01T00:00:00Z when the patch changed nothing (the running pods are the rollout).
#         Also written when the step fails having changed nothing (policy unreadable, patch refused):
#         "patched": false then tells the pipeline there is nothing to roll back.
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${POLICY_NAME:?POLICY_NAME must name the ClusterPolicy to patch (e.g. gpu-cluster-policy)}"
: "${PATCH_JSON:?PATCH_JSON must hold the JSON patch document computed by the pipeline}"
DRY_RUN="${DRY_RUN:-false}"

case "$DRY_RUN" in
  true | false) ;;
  *)
    echo "ERROR: DRY_RUN must be 'true' or 'false', got '$DRY_RUN'." >&2
    exit 2
    ;;
esac

# The failure result: this step changed nothing (KPO still pushes the result file of a failed pod).
unchanged() {
  write_result '{"previous_driver": %s, "patched": false, "patched_at": null}' "$1"
}

policy_file="$(mktemp)"
trap 'rm -f "$policy_file"' EXIT
if ! kubectl_retry get clusterpolicy "$POLICY_NAME" -o json >"$policy_file" ||
  ! previous="$(kubectl patch --local -f "$policy_file" --type=merge -p '{}' -o jsonpath='{.spec.driver}')"; then
  unchanged null
  echo "ERROR: could not read ClusterPolicy '$POLICY_NAME'. Check that it exists" \
    "(kubectl get clusterpolicies) and that this pod's ServiceAccount may get clusterpolicies.nvidia.com." >&2
  exit 1
fi
# kubectl prints a map as JSON and a missing field as nothing.
if [[ -z "$previous" ]]; then
  previous=null
fi
# Logged so the previous spec can be recovered from the task log even if XCom is lost.
printf 'Current spec.driver of clusterpolicy/%s (before patch):\n%s\n' "$POLICY_NAME" "$previous"
printf 'JSON patch to apply:\n%s\n' "$PATCH_JSON"

# spec.driver as the patch leaves the policy the pipeline read, computed locally: the `test` guard (the
# first op, holding spec.driver as read) becomes a `replace` with that value. So a try that finds its own
# patch already applied (an earlier try was killed after applying it) can recognise it.
as_read_patch="$(printf '%s' "$PATCH_JSON" | sed -E '0,/"op"[[:space:]]*:[[:space:]]*"test"/s//"op":"replace"/')"
wanted="$(kubectl patch --local -f "$policy_file" --type=json -p "$as_read_patch" -o jsonpath='{.spec.driver}' \
  2>/dev/null || true)"

if [[ "$DRY_RUN" == "true" ]]; then
  echo "DRY_RUN=true: the ClusterPolicy was not changed."
  unchanged "$previous"
  exit 0
fi

# Taken just before the request: pods the operator creates for the new spec are created after this instant,
# and verification only trusts pods at least this new (timestamps have one-second precision).
patched_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if ! kubectl_retry patch clusterpolicy "$POLICY_NAME" --type=json -p "$PATCH_JSON"; then
  current="$(kubectl_retry get clusterpolicy "$POLICY_NAME" -o jsonpath='{.spec.driver}' || true)"
  if [[ -n "$wanted" && "$current" == "$wanted" ]]; then
    # Already applied: by an attempt reported as failed (5xx, lost connection) whose repeat's guard
    # refused, or by an earlier try of this step whose process was killed. Nothing to do.
    if ((API_ATTEMPTS_USED > 1)); then
      echo "An earlier attempt had already applied the patch: spec.driver is the wanted one."
    else
      echo "An earlier try had already applied the patch: spec.driver is the wanted one."
    fi
  else
    echo "ERROR: the API server rejected the patch of clusterpolicy/$POLICY_NAME (see kubectl's message above)." >&2
    echo "If it reports a failed 'test' operation, the ClusterPolicy changed since the pipeline read it:" \
      "the guard caught a concurrent change and nothing was overwritten." \
      "Review the current policy, then re-run the pipeline so it reads the policy afresh." >&2
    printf 'Current spec.driver of clusterpolicy/%s:\n%s\n' "$POLICY_NAME" "${current:-unreadable}" >&2
    unchanged "$previous"
    exit 1
  fi
fi

after="$(kubectl_retry get clusterpolicy "$POLICY_NAME" -o jsonpath='{.spec.driver}' || true)"
printf 'spec.driver of clusterpolicy/%s after patch (patched at %s):\n%s\n' "$POLICY_NAME" "$patched_at" "$after"
if [[ "$after" == "$previous" ]]; then
  # Nothing changed (a re-run): the operator starts no new pods, so the running ones are the rollout.
  echo "The ClusterPolicy already had this driver spec: verification checks the running driver pods."
  patched_at="1970-01-01T00:00:00Z"
fi
write_result '{"previous_driver": %s, "patched": true, "patched_at": "%s"}' "$previous" "$patched_at"
