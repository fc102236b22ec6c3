#!/usr/bin/env bash
# Find the Driver Toolkit (DTK) image(s) of one OpenShift release.
#
# Env:  RELEASE_VERSION, RELEASE_ARCH  the release (e.g. 4.18.12, x86_64), echoed into the result
#       RELEASE_IMAGE     release payload, e.g. quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64
#       PULL_SECRET_FILE  the OpenShift pull secret (mounted file)
# Result: {"version", "arch", "release_image", "dtk_image", "dtk_image_10"} with the DTK pull specs by
#         digest; dtk_image_10 (driver-toolkit-10, the RHEL 10 CoreOS stream) is "" when the payload has none.
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${RELEASE_VERSION:?}" "${RELEASE_ARCH:?}" "${RELEASE_IMAGE:?}" "${PULL_SECRET_FILE:?}"
DIGEST_SPEC='^[a-zA-Z0-9./:_-]+@sha256:[a-f0-9]{64}$'

echo "Resolving the driver-toolkit image of $RELEASE_IMAGE"
# --image-for cannot be combined with -o: it prints the bare pull spec.
if ! dtk_image="$(oc adm release info --image-for=driver-toolkit -a "$PULL_SECRET_FILE" "$RELEASE_IMAGE")"; then
  echo "ERROR: 'oc adm release info' failed for $RELEASE_IMAGE. Check that the release exists for this" \
    "architecture and that the pull secret can read the release repository (mirrors: set" \
    "PRECOMPILED_DRIVERS_RELEASE_IMAGE_REPOSITORY)." >&2
  exit 1
fi
if [[ ! "$dtk_image" =~ $DIGEST_SPEC ]]; then
  echo "ERROR: expected a pull spec by digest from oc, got '$dtk_image'." >&2
  exit 1
fi
echo "driver-toolkit: $dtk_image"

# Payloads with a RHEL 10 CoreOS stream also carry driver-toolkit-10 (openshift/driver-toolkit
# manifests/image-references-rhel10). oc says 'no image tag "driver-toolkit-10" exists in the release
# image ...' (release/info.go findImageSpec) when there is none: one stream, as before. Any other
# failure is an error.
errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT
if dtk_image_10="$(oc adm release info --image-for=driver-toolkit-10 -a "$PULL_SECRET_FILE" "$RELEASE_IMAGE" 2>"$errors")"; then
  if [[ ! "$dtk_image_10" =~ $DIGEST_SPEC ]]; then
    echo "ERROR: expected a pull spec by digest from oc for driver-toolkit-10, got '$dtk_image_10'." >&2
    exit 1
  fi
  echo "driver-toolkit-10: $dtk_image_10"
elif grep -q 'no image tag "driver-toolkit-10" exists' "$errors"; then
  dtk_image_10=""
  echo "driver-toolkit-10: not in this release (one RHEL stream)"
else
  cat "$errors" >&2
  echo "ERROR: 'oc adm release info --image-for=driver-toolkit-10' failed for $RELEASE_IMAGE." >&2
  exit 1
fi

write_result '{"version": "%s", "arch": "%s", "release_image": "%s", "dtk_image": "%s", "dtk_image_10": "%s"}' \
  "$RELEASE_VERSION" "$RELEASE_ARCH" "$RELEASE_IMAGE" "$dtk_image" "$dtk_image_10"
