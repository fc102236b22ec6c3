#!/usr/bin/env bash
# Find the Driver Toolkit (DTK) image of one OpenShift release.
#
# Env:  RELEASE_VERSION, RELEASE_ARCH  the release (e.g. 4.18.12, x86_64), echoed into the result
#       RELEASE_IMAGE     release payload, e.g. quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64
#       PULL_SECRET_FILE  the OpenShift pull secret (mounted file)
#       XCOM_RETURN       where to write the result (default /airflow/xcom/return.json)
# Result: {"version", "arch", "release_image", "dtk_image"} with the DTK pull spec by digest.
set -euo pipefail

: "${RELEASE_VERSION:?}" "${RELEASE_ARCH:?}" "${RELEASE_IMAGE:?}" "${PULL_SECRET_FILE:?}"
RESULT_FILE="${XCOM_RETURN:-/airflow/xcom/return.json}"

echo "Resolving the driver-toolkit image of $RELEASE_IMAGE"
# --image-for cannot be combined with -o: it prints the bare pull spec.
if ! dtk_image="$(oc adm release info --image-for=driver-toolkit -a "$PULL_SECRET_FILE" "$RELEASE_IMAGE")"; then
  echo "ERROR: 'oc adm release info' failed for $RELEASE_IMAGE. Check that the release exists for this" \
    "architecture and that the pull secret can read the release repository (mirrors: set" \
    "PRECOMPILED_DRIVERS_RELEASE_IMAGE_REPOSITORY)." >&2
  exit 1
fi
if [[ ! "$dtk_image" =~ ^[a-zA-Z0-9./:_-]+@sha256:[a-f0-9]{64}$ ]]; then
  echo "ERROR: expected a pull spec by digest from oc, got '$dtk_image'." >&2
  exit 1
fi
echo "driver-toolkit: $dtk_image"

mkdir -p "$(dirname "$RESULT_FILE")"
printf '{"version": "%s", "arch": "%s", "release_image": "%s", "dtk_image": "%s"}\n' \
  "$RELEASE_VERSION" "$RELEASE_ARCH" "$RELEASE_IMAGE" "$dtk_image" >"$RESULT_FILE"
