#!/usr/bin/env bash
# Copy a built driver image from the staging registry to the target repository, keeping its digest.
#
# Env:  STAGING_IMAGE    source reference (the build step's output)
#       IMAGE            destination reference (what the GPU Operator will pull)
#       EXPECTED_DIGEST  the digest the build pushed; the copy must keep it
#       PUSH_AUTH_FILE   credentials for the destination (mounted file)
#       TLS_VERIFY       true|false (false only for a plain-HTTP test registry)
#       SIGNING_KEY_FILE, SIGNING_PASSPHRASE_FILE, SIGNING_PUBLIC_KEY_FILE  (image signing on) cosign.key,
#                        cosign.password and cosign.pub mounted from the image signing Secret
# The source is read with this pod's ServiceAccount token when one is mounted (OpenShift internal registry).
# Signing: the image is first pushed by digest only (no tag) with a sigstore signature stored next to it in
# the registry (sigstore attachments, tag sha256-<digest>.sig), then tagged; so a failed signature leaves
# no unsigned image under the tag the GPU Operator pulls. A retry signs again (an extra, equal signature).
# Result: {"image", "digest", "staging_image", "signed": true|false, "signing_key_sha256": "<hex>"|""}
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

signed=false
signing_key=""
if [[ -n "${SIGNING_KEY_FILE:-}" ]]; then
  : "${SIGNING_PASSPHRASE_FILE:?}" "${SIGNING_PUBLIC_KEY_FILE:?}"
  signing_key="$(sha256sum "$SIGNING_PUBLIC_KEY_FILE" | cut -d' ' -f1)"
  # containers/image writes sigstore signatures into the registry only where registries.d says so.
  registries_d="$(mktemp -d)"
  trap 'rm -f "$src_authfile"; rm -rf "$registries_d"' EXIT
  printf 'docker:\n  %s:\n    use-sigstore-attachments: true\n' "${IMAGE%%/*}" >"$registries_d/sigstore.yaml"
  repository="${IMAGE%:*}"
  echo "Signing $repository@$EXPECTED_DIGEST (sigstore, key sha256 $signing_key) and pushing it by digest"
  errors="$registries_d/errors"
  status=0
  skopeo --registries.d "$registries_d" copy --retry-times 3 --preserve-digests "${src_auth[@]}" \
    --dest-authfile "$PUSH_AUTH_FILE" --src-tls-verify="$TLS_VERIFY" --dest-tls-verify="$TLS_VERIFY" \
    --sign-by-sigstore-private-key "$SIGNING_KEY_FILE" --sign-passphrase-file "$SIGNING_PASSPHRASE_FILE" \
    --sign-identity "$IMAGE" "docker://$STAGING_IMAGE" "docker://$repository@$EXPECTED_DIGEST" 2>"$errors" ||
    status=$?
  cat "$errors" >&2
  if ((status != 0)); then
    # skopeo's own reason (its last fatal message) goes into the one ERROR line the report shows.
    reason="$(sed -n 's/.*level=fatal msg="\(.*\)".*/\1/p' "$errors" | tail -n 1)"
    echo "ERROR: could not push and sign $repository@$EXPECTED_DIGEST (${reason:-skopeo exit $status});" \
      "$IMAGE was not tagged. Check the push secret (PRECOMPILED_DRIVERS_PUSH_SECRET), the image signing Secret" \
      "(PRECOMPILED_DRIVERS_IMAGE_SIGNING_SECRET: cosign.key, cosign.password, cosign.pub) and that this" \
      "skopeo can sign with sigstore keys (built with sigstore support, as quay.io/skopeo/stable is)." >&2
    exit 1
  fi
  signed=true
  # The signature is attached to the digest, so the tag needs no signature of its own.
  if ! skopeo copy --retry-times 3 --preserve-digests --remove-signatures --src-authfile "$PUSH_AUTH_FILE" \
    --dest-authfile "$PUSH_AUTH_FILE" --src-tls-verify="$TLS_VERIFY" --dest-tls-verify="$TLS_VERIFY" \
    "docker://$repository@$EXPECTED_DIGEST" "docker://$IMAGE"; then
    echo "ERROR: could not tag $IMAGE (the signed image is at $repository@$EXPECTED_DIGEST)." >&2
    exit 1
  fi
else
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
fi

digest="$(skopeo inspect --authfile "$PUSH_AUTH_FILE" --tls-verify="$TLS_VERIFY" --format '{{.Digest}}' \
  "docker://$IMAGE")"
if [[ "$digest" != "$EXPECTED_DIGEST" ]]; then
  echo "ERROR: $IMAGE has digest $digest after the copy, but the build produced $EXPECTED_DIGEST." >&2
  exit 1
fi
echo "pushed $IMAGE@$digest"

write_result '{"image": "%s", "digest": "%s", "staging_image": "%s", "signed": %s, "signing_key_sha256": "%s"}' \
  "$IMAGE" "$digest" "$STAGING_IMAGE" "$signed" "$signing_key"
