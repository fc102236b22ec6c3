#!/usr/bin/env bash
# Helpers every step script shares. Not run on its own: steps/base.py `script()` puts this text in front of
# each step script when it builds the pod spec, so a pod still runs one static text (`bash -c`). Only
# functions and settings from the environment are defined here; nothing runs.
#
# Env:  XCOM_RETURN        where write_result puts the step's result (default /airflow/xcom/return.json)
#       SA_TOKEN_FILE      the pod's ServiceAccount token (default: where Kubernetes mounts it)
#       API_ATTEMPTS, API_RETRY_SECONDS  kubectl_retry: transient API errors (5xx, 429, no connection) are
#                          retried up to API_ATTEMPTS times (default 5), waiting API_RETRY_SECONDS (default 2)
#                          then twice as long each time, at most 30 s. A refusal (422 from a `test` guard, 409,
#                          403, 404...) is never retried.
set -euo pipefail

RESULT_FILE="${XCOM_RETURN:-/airflow/xcom/return.json}"
SA_TOKEN_FILE="${SA_TOKEN_FILE:-/var/run/secrets/kubernetes.io/serviceaccount/token}"
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
# Set by kubectl_retry: how many attempts its last call took (1 = no transient error).
# shellcheck disable=SC2034 # read by the scripts that check whether a failed call had been retried
API_ATTEMPTS_USED=1

# write_result FORMAT [ARG...]: the step's result (one JSON line, printf-style) where the XCom sidecar reads it.
write_result() {
  local format="$1"
  shift
  mkdir -p "$(dirname "$RESULT_FILE")"
  # shellcheck disable=SC2059 # the format is each caller's literal JSON template
  printf "$format\n" "$@" >"$RESULT_FILE"
}

# token_authfile REGISTRY FILE: write a registry auth file for this pod's ServiceAccount token (the OpenShift
# internal registry accepts it), so the token goes through a file, never a command line. Returns 1, writing
# nothing, when the pod has no token.
token_authfile() {
  [[ -r "$SA_TOKEN_FILE" ]] || return 1
  printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$1" \
    "$(printf 'serviceaccount:%s' "$(cat "$SA_TOKEN_FILE")" | base64 -w0)" >"$2"
}

# True when kubectl's error output (file $1) shows a transient failure: the API server was overloaded or
# failing (5xx, 429) or could not be reached. Refusals (Invalid = a failed `test` guard, Conflict,
# Forbidden, NotFound...) are final and must not be retried.
transient_error() {
  grep -qE 'Error from server \((InternalError|ServiceUnavailable|TooManyRequests|Timeout|ServerTimeout)\)|Unable to connect to the server|connection refused|The connection to the server .* was refused|connection reset|i/o timeout|TLS handshake timeout|unexpected EOF|http2: client connection lost' "$1"
}

# kubectl with a bounded retry of transient errors only; stdout and stderr pass through.
# A JSON patch starting with a `test` guard is safe to repeat: if an attempt that seemed to fail was in
# fact applied, the repeat fails its guard (422) instead of applying twice (the caller checks for that).
kubectl_retry() {
  local attempt=1 wait="$API_RETRY_SECONDS" errors status
  errors="$(mktemp)"
  while true; do
    status=0
    kubectl "$@" 2>"$errors" || status=$?
    cat "$errors" >&2
    # shellcheck disable=SC2034 # see above
    API_ATTEMPTS_USED=$attempt
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
