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
#       XCOM_RETURN  where to write the result (default /airflow/xcom/return.json)
#       API_ATTEMPTS, API_RETRY_SECONDS  transient API errors (5xx, 429, no connection) are retried up to
#                    API_ATTEMPTS times (default 5), waiting API_RETRY_SECONDS (default 2) then twice as long
#                    each time. A refusal (422 from the guard, 403, 404...) is never retried.
# Result: {"previous_driver": <spec.driver before, or null>, "patched": true|false, "patched_at": "<UTC>"|null}
#         patched_at is 1970-01-01T00:00:00Z when the patch changed nothing (the running pods are the rollout).
#         Also written when the step fails having changed nothing (policy unreadable, patch refused):
#         "patched": false then tells the pipeline there is nothing to roll back.
set -euo pipefail

: "${POLICY_NAME:?POLICY_NAME must name the ClusterPolicy to patch (e.g. gpu-cluster-policy)}"
: "${PATCH_JSON:?PATCH_JSON must hold the JSON patch document computed by the pipeline}"
DRY_RUN="${DRY_RUN:-false}"
RESULT_FILE="${XCOM_RETURN:-/airflow/xcom/return.json}"

API_ATTEMPTS="${API_ATTEMPTS:-5}"
API_RETRY_SECONDS="${API_RETRY_SECONDS:-2}"
[[ "$API_ATTEMPTS" =~ ^[1-9][0-9]?$ ]] || {
  echo "ERROR: API_ATTEMPTS must be a whole number from 1 to 99, got '$API_ATTEMPTS'." >&2
  exit 2
}
[[ "$API_RETRY_SECONDS" =~ ^[0-9]{1,3}$ ]] || {
  echo "ERROR: API_RETRY_SECONDS must be a whole number of seconds, got '$API_RETRY_SECONDS'." >&2
  exit 2
}

case "$DRY_RUN" in
  true | false) ;;
  *)
    echo "ERROR: DRY_RUN must be 'true' or 'false', got '$DRY_RUN'." >&2
    exit 2
    ;;
esac

# Set by kubectl_retry: how many attempts its last call took (1 = no transient error).
attempts_used=1

# True when kubectl's error output (file $1) shows a transient failure: the API server was overloaded or
# failing (5xx, 429) or could not be reached. Refusals (Invalid = a failed `test` guard, Forbidden,
# NotFound, Conflict...) are final and must not be retried.
transient_error() {
  grep -qE 'Error from server \((InternalError|ServiceUnavailable|TooManyRequests|Timeout|ServerTimeout)\)|Unable to connect to the server|connection refused|connection reset|i/o timeout|TLS handshake timeout|unexpected EOF|http2: client connection lost' "$1"
}

# kubectl with a bounded retry of transient errors only; stdout and stderr pass through.
# A JSON patch starting with a `test` guard is safe to repeat: if an attempt that seemed to fail was in
# fact applied, the repeat fails its guard (422) instead of applying twice (handled by the caller).
kubectl_retry() {
  local attempt=1 wait="$API_RETRY_SECONDS" errors status
  errors="$(mktemp)"
  while true; do
    status=0
    kubectl "$@" 2>"$errors" || status=$?
    cat "$errors" >&2
    attempts_used=$attempt
    if ((status == 0)); then
      rm -f "$errors"
      return 0
    fi
    if ((attempt >= API_ATTEMPTS)) || ! transient_error "$errors"; then
      rm -f "$errors"
      return "$status"
    fi
    echo "Transient API error (attempt $attempt of $API_ATTEMPTS); retrying in ${wait}s." >&2
    sleep "$wait"
    attempt=$((attempt + 1))
    wait=$((wait * 2 > 30 ? 30 : wait * 2))
  done
}

# The failure result: this step changed nothing (KPO still pushes the result file of a failed pod).
unchanged() {
  printf '{"previous_driver": %s, "patched": false, "patched_at": null}\n' "$1" >"$RESULT_FILE"
}

mkdir -p "$(dirname "$RESULT_FILE")"
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
  printf '{"previous_driver": %s, "patched": false, "patched_at": null}\n' "$previous" >"$RESULT_FILE"
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
    if ((attempts_used > 1)); then
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
printf '{"previous_driver": %s, "patched": true, "patched_at": "%s"}\n' "$previous" "$patched_at" >"$RESULT_FILE"
