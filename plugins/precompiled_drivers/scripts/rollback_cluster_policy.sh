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
#       API_ATTEMPTS, API_RETRY_SECONDS  kubectl_retry (lib.sh): transient API errors (5xx, 429, no connection)
#                    are retried, a refusal (422 from the guard, 409, 403...) never
# Result: {"rolled_back": true, "driver_before": <spec.driver before>, "driver_after": <spec.driver after>}
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${POLICY_NAME:?POLICY_NAME must name the ClusterPolicy to roll back (e.g. gpu-cluster-policy)}"
: "${PATCH_JSON:?PATCH_JSON must hold the rollback JSON patch computed by the pipeline}"

policy_file="$(mktemp)"
trap 'rm -f "$policy_file"' EXIT
if ! kubectl_retry get clusterpolicy "$POLICY_NAME" -o json >"$policy_file" ||
  ! current="$(kubectl patch --local -f "$policy_file" --type=merge -p '{}' -o jsonpath='{.spec.driver}')"; then
  echo "ERROR: could not read ClusterPolicy '$POLICY_NAME'; nothing was rolled back. Check that it exists" \
    "and that this pod's ServiceAccount may get and patch clusterpolicies.nvidia.com." >&2
  exit 1
fi
[[ -n "$current" ]] || current=null
printf 'Current spec.driver of clusterpolicy/%s (before rollback):\n%s\n' "$POLICY_NAME" "$current"
printf 'Rollback JSON patch:\n%s\n' "$PATCH_JSON"

# When the pipeline's patch never landed (it failed), spec.driver still is the previous one: nothing to undo.
if [[ -n "${PREVIOUS_DRIVER_JSON:-}" ]] &&
  kubectl_retry patch clusterpolicy "$POLICY_NAME" --type=json \
    -p "[{\"op\": \"test\", \"path\": \"/spec/driver\", \"value\": $PREVIOUS_DRIVER_JSON}]" >/dev/null 2>&1; then
  echo "spec.driver already equals the previous driver spec: nothing to roll back."
  write_result '{"rolled_back": false, "driver_before": %s, "driver_after": %s}' "$current" "$current"
  exit 0
fi

# spec.driver as the rollback will leave it, computed locally (empty when its guard already fails here).
wanted="$(kubectl patch --local -f "$policy_file" --type=json -p "$PATCH_JSON" -o jsonpath='{.spec.driver}' \
  2>/dev/null || true)"
if ! kubectl_retry patch clusterpolicy "$POLICY_NAME" --type=json -p "$PATCH_JSON"; then
  now="$(kubectl_retry get clusterpolicy "$POLICY_NAME" -o jsonpath='{.spec.driver}' || true)"
  if ((API_ATTEMPTS_USED > 1)) && [[ -n "$wanted" && "$now" == "$wanted" ]]; then
    # An attempt reported as failed (5xx, lost connection) had been applied; the repeat's guard refused.
    echo "An earlier attempt had already applied the rollback: spec.driver is the restored one."
  else
    echo "ERROR: rollback of clusterpolicy/$POLICY_NAME was rejected (see kubectl's message above); the policy" \
      "is unchanged by this step." >&2
    echo "If it reports a failed 'test' operation, someone changed spec.driver after the pipeline's patch:" \
      "the rollback refused to overwrite that change. Compare the current spec.driver printed above with the" \
      "previous one in the patch step's log and restore it by hand if needed." >&2
    exit 1
  fi
fi

restored="$(kubectl_retry get clusterpolicy "$POLICY_NAME" -o jsonpath='{.spec.driver}' || true)"
[[ -n "$restored" ]] || restored=null
printf 'Restored spec.driver of clusterpolicy/%s:\n%s\n' "$POLICY_NAME" "$restored"
write_result '{"rolled_back": true, "driver_before": %s, "driver_after": %s}' "$current" "$restored"
