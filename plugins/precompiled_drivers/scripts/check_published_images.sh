#!/usr/bin/env bash
# Ask the target registry which image references already exist, so they are not rebuilt.
#
# Env:  IMAGES          image references, one per line
#       PUSH_AUTH_FILE  registry credentials (mounted file)
#       TLS_VERIFY      true|false (false only for a plain-HTTP test registry)
#       XCOM_RETURN     where to write the result (default /airflow/xcom/return.json)
# Result: {"<image>": "<sha256:digest>" or "" when the tag does not exist, ...}
set -euo pipefail

: "${IMAGES?}" "${PUSH_AUTH_FILE:?}"
TLS_VERIFY="${TLS_VERIFY:-true}"
RESULT_FILE="${XCOM_RETURN:-/airflow/xcom/return.json}"

errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT
result="{"
separator=""
while IFS= read -r image; do
  [[ -n "$image" ]] || continue
  digest=""
  # stdout is the digest alone; skopeo's warnings and errors go to a file we read on failure.
  if output="$(skopeo inspect --authfile "$PUSH_AUTH_FILE" --tls-verify="$TLS_VERIFY" \
    --format '{{.Digest}}' "docker://$image" 2>"$errors")"; then
    digest="$output"
    if [[ ! "$digest" =~ ^sha256:[a-f0-9]{64}$ ]]; then
      echo "ERROR: skopeo printed '$digest' for $image, not a sha256 digest." >&2
      exit 1
    fi
    echo "exists:  $image ($digest)"
  elif grep -qE "manifest unknown|not found|name unknown" "$errors"; then
    echo "missing: $image"
  else
    echo "ERROR: cannot tell whether $image exists: $(cat "$errors")" >&2
    echo "Check the push secret and that the registry is reachable." >&2
    exit 1
  fi
  result+="$separator\"$image\": \"$digest\""
  separator=", "
done <<<"$IMAGES"
result+="}"

mkdir -p "$(dirname "$RESULT_FILE")"
printf '%s\n' "$result" >"$RESULT_FILE"
