#!/usr/bin/env bash
# Copy a built driver image from the staging registry to the target repository, keeping its digest.
#
# Env:  STAGING_IMAGE    source reference (the build step's output)
#       IMAGE            destination reference (what the GPU Operator will pull)
#       EXPECTED_DIGEST  the digest the build pushed; the copy must keep it
#       PUSH_AUTH_FILE   credentials for the destination (mounted file)
#       TLS_VERIFY       true|false (false only for a plain-HTTP test registry)
# The source is read with this pod's ServiceAccount token when one is mounted (OpenShift internal registry).
# Result: {"image", "digest", "staging_image"}
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${STAGING_IMAGE:?}" "${IMAGE:?}" "${EXPECTED_DIGEST:?}" "${PUSH_AUTH_FILE:?}"
TLS_VERIFY="${TLS_VERIFY:-true}"

src_auth=()
src_authfile="$(mktemp)"
trap 'rm -f "$src_authfile"' EXIT
if token_authfile "${STAGING_IMAGE%%/*}" "$src_authfile"; then
  src_auth=(--src-authfile "$src_authfile")
fi

# A retry after a try that was killed may find its image already pushed: with the digest, nothing to copy.
existing="$(skopeo inspect --authfile "$PUSH_AUTH_FILE" --tls-verify="$TLS_VERIFY" --format '{{.Digest}}' \
  "docker://$IMAGE" 2>/dev/null || true)"
if [[ "$existing" == "$EXPECTED_DIGEST" ]]; then
  echo "$IMAGE already has digest $EXPECTED_DIGEST (pushed by an earlier try): not copied again."
else
  echo "Copying $STAGING_IMAGE -> $IMAGE"
fi
if [[ "$existing" != "$EXPECTED_DIGEST" ]] && ! skopeo copy --retry-times 3 --preserve-digests "${src_auth[@]}" --dest-authfile "$PUSH_AUTH_FILE" \
  --src-tls-verify="$TLS_VERIFY" --dest-tls-verify="$TLS_VERIFY" \
  "docker://$STAGING_IMAGE" "docker://$IMAGE"; then
  echo "ERROR: could not push $IMAGE. If the registry refused the credentials, check the push secret" \
    "(PRECOMPILED_DRIVERS_PUSH_SECRET); this step retries on its own and never rebuilds." >&2
  exit 1
fi

digest="$(skopeo inspect --authfile "$PUSH_AUTH_FILE" --tls-verify="$TLS_VERIFY" --format '{{.Digest}}' \
  "docker://$IMAGE")"
if [[ "$digest" != "$EXPECTED_DIGEST" ]]; then
  echo "ERROR: $IMAGE has digest $digest after the copy, but the build produced $EXPECTED_DIGEST." >&2
  exit 1
fi
echo "pushed $IMAGE@$digest"

write_result '{"image": "%s", "digest": "%s", "staging_image": "%s"}' "$IMAGE" "$digest" "$STAGING_IMAGE"
