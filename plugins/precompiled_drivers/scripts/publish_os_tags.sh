#!/usr/bin/env bash
# Publish each driver image under the other OS tags the GPU Operator may look for, as registry-side copies.
#
# The operator appends ONE OS tag to every kernel's image, taken from whichever GPU node it lists first, so a
# cluster whose nodes report several OS tags needs each image under each of them. NVIDIA's Makefile and
# Dockerfile use OS_TAG only for the tag and the `release` label, so a copy by digest serves as well as a build.
#
# Env:  ALIASES         lines '<image> <alias>': after this step <alias> holds the digest <image> has now
#       PUSH_AUTH_FILE  registry credentials (mounted file)
#       TLS_VERIFY      true|false (false only for a plain-HTTP test registry)
# Result: {"<alias>": "<sha256:digest>", ...}; "" for an alias whose image is not published (the gate names it)
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${ALIASES?}" "${PUSH_AUTH_FILE:?}"
TLS_VERIFY="${TLS_VERIFY:-true}"

errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT

# Prints the digest of $1, nothing when the tag does not exist; fails on any other registry error.
digest_of() {
  local out
  if out="$(skopeo inspect --authfile "$PUSH_AUTH_FILE" --tls-verify="$TLS_VERIFY" --format '{{.Digest}}' \
    "docker://$1" 2>"$errors")"; then
    [[ "$out" =~ ^sha256:[a-f0-9]{64}$ ]] || {
      echo "ERROR: skopeo printed '$out' for $1, not a sha256 digest." >&2
      return 1
    }
    printf '%s' "$out"
  elif ! grep -qE "manifest unknown|not found|name unknown" "$errors"; then
    echo "ERROR: cannot read $1: $(cat "$errors")" >&2
    return 1
  fi
}

result="{"
separator=""
while read -r image alias; do
  [[ -n "${image:-}" ]] || continue
  [[ -n "${alias:-}" ]] || {
    echo "ERROR: each ALIASES line needs '<image> <alias>', got '$image'." >&2
    exit 2
  }
  source_digest="$(digest_of "$image")"
  published=""
  if [[ -z "$source_digest" ]]; then
    echo "skip:    $alias (its image $image is not published)"
  elif [[ "$(digest_of "$alias")" == "$source_digest" ]]; then
    echo "exists:  $alias ($source_digest)"
    published="$source_digest"
  else
    # By digest, so a tag moved meanwhile cannot slip another image under the alias.
    skopeo copy --retry-times 3 --preserve-digests --src-authfile "$PUSH_AUTH_FILE" \
      --dest-authfile "$PUSH_AUTH_FILE" --src-tls-verify="$TLS_VERIFY" --dest-tls-verify="$TLS_VERIFY" \
      "docker://${image%:*}@$source_digest" "docker://$alias"
    published="$(digest_of "$alias")"
    if [[ "$published" != "$source_digest" ]]; then
      echo "ERROR: $alias has digest '$published' after the copy, not $source_digest." >&2
      exit 1
    fi
    echo "copied:  $image -> $alias ($published)"
  fi
  result+="$separator\"$alias\": \"$published\""
  separator=", "
done <<<"$ALIASES"
result+="}"

write_result '%s' "$result"
