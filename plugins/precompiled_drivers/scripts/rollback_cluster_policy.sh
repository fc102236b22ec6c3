#!/usr/bin/env bash
# Roll the GPU Operator ClusterPolicy's driver section back after a failed rollout.
#
# The patch document is computed by the pipeline (precompiled_drivers.cluster_policy.rollback_patch): a `test`
# that spec.driver is still what our patch set, then the previous driver section restored whole (or, when
# the previous section is unknown, usePrecompiled=false with version/image/repository removed).
#
# Env:  POLICY_NAME  ClusterPolicy name (cluster-scoped, usually gpu-cluster-policy)
#       PATCH_JSON   the RFC 6902 JSON patch document
#       PREVIOUS_DRIVER_JSON  optional: the spec.driver to restore; when the policy already holds it, do nothing
#       XCOM_RETURN  where to write the result (default /airflow/xcom/return.json)
# Result: {"rolled_back": true, "driver_before": <spec.driver before>, "driver_after": <spec.driver after>}
set -euo pipefail

: "${POLICY_NAME:?POLICY_NAME must name the ClusterPolicy to roll back (e.g. gpu-cluster-policy)}"
: "${PATCH_JSON:?PATCH_JSON must hold the rollback JSON patch computed by the pipeline}"
RESULT_FILE="${XCOM_RETURN:-/airflow/xcom/return.json}"

if ! current="$(kubectl get clusterpolicy "$POLICY_NAME" -o jsonpath='{.spec.driver}')"; then
  echo "ERROR: could not read ClusterPolicy '$POLICY_NAME'; nothing was rolled back. Check that it exists" \
    "and that this pod's ServiceAccount may get and patch clusterpolicies.nvidia.com." >&2
  exit 1
fi
[[ -n "$current" ]] || current=null
printf 'Current spec.driver of clusterpolicy/%s (before rollback):\n%s\n' "$POLICY_NAME" "$current"
printf 'Rollback JSON patch:\n%s\n' "$PATCH_JSON"

# When the pipeline's patch never landed (it failed), spec.driver still is the previous one: nothing to undo.
if [[ -n "${PREVIOUS_DRIVER_JSON:-}" ]] &&
  kubectl patch clusterpolicy "$POLICY_NAME" --type=json \
    -p "[{\"op\": \"test\", \"path\": \"/spec/driver\", \"value\": $PREVIOUS_DRIVER_JSON}]" >/dev/null 2>&1; then
  echo "spec.driver already equals the previous driver spec: nothing to roll back."
  mkdir -p "$(dirname "$RESULT_FILE")"
  printf '{"rolled_back": false, "driver_before": %s, "driver_after": %s}\n' "$current" "$current" >"$RESULT_FILE"
  exit 0
fi

if ! kubectl patch clusterpolicy "$POLICY_NAME" --type=json -p "$PATCH_JSON"; then
  echo "ERROR: rollback of clusterpolicy/$POLICY_NAME was rejected (see kubectl's message above); the policy" \
    "is unchanged by this step." >&2
  echo "If it reports a failed 'test' operation, someone changed spec.driver after the pipeline's patch:" \
    "the rollback refused to overwrite that change. Compare the current spec.driver printed above with the" \
    "previous one in the patch step's log and restore it by hand if needed." >&2
  exit 1
fi

restored="$(kubectl get clusterpolicy "$POLICY_NAME" -o jsonpath='{.spec.driver}' || true)"
[[ -n "$restored" ]] || restored=null
printf 'Restored spec.driver of clusterpolicy/%s:\n%s\n' "$POLICY_NAME" "$restored"

mkdir -p "$(dirname "$RESULT_FILE")"
printf '{"rolled_back": true, "driver_before": %s, "driver_after": %s}\n' "$current" "$restored" >"$RESULT_FILE"
