#!/usr/bin/env bash
# Ask the target registry which image references already exist, so they are not rebuilt.
#
# Env:  IMAGES             lines '<image reference> [<kernel module type>]'; with a type, a tag whose image
#                          label MODULE_TYPE_LABEL says otherwise (or nothing) counts as not published
#       MODULE_TYPE_LABEL  the image label that records the kernel module type (open|proprietary)
#       PUSH_AUTH_FILE     registry credentials (mounted file)
#       TLS_VERIFY         true|false (false only for a plain-HTTP test registry)
# Result: {"<image>": "<sha256:digest>" or "" when the tag does not exist or has the other module type, ...}
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${IMAGES?}" "${PUSH_AUTH_FILE:?}" "${MODULE_TYPE_LABEL:?}"
TLS_VERIFY="${TLS_VERIFY:-true}"
# The label name goes into a Go template below: only the characters a label key can hold.
[[ "$MODULE_TYPE_LABEL" =~ ^[a-z0-9][a-z0-9./-]*$ ]] || {
  echo "ERROR: MODULE_TYPE_LABEL '$MODULE_TYPE_LABEL' is not an image label key." >&2
  exit 2
}

errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT
result="{"
separator=""
while read -r image module_type; do
  [[ -n "$image" ]] || continue
  digest=""
  # stdout is the digest and the label alone; skopeo's warnings and errors go to a file we read on failure.
  if output="$(skopeo inspect --authfile "$PUSH_AUTH_FILE" --tls-verify="$TLS_VERIFY" \
    --format "{{.Digest}} {{index .Labels \"$MODULE_TYPE_LABEL\"}}" "docker://$image" 2>"$errors")"; then
    read -r digest label <<<"$output"
    if [[ ! "$digest" =~ ^sha256:[a-f0-9]{64}$ ]]; then
      echo "ERROR: skopeo printed '$output' for $image, not a sha256 digest." >&2
      exit 1
    fi
    if [[ -n "${module_type:-}" && "${label:-}" != "$module_type" ]]; then
      echo "stale:   $image ($digest) carries ${label:-no} kernel modules (label $MODULE_TYPE_LABEL)," \
        "not $module_type: it is rebuilt"
      digest=""
    else
      echo "exists:  $image ($digest${label:+, $label kernel modules})"
    fi
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

write_result '%s' "$result"
