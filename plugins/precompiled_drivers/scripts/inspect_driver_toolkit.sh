#!/usr/bin/env bash
# Read the kernel and RHEL version a Driver Toolkit image was built for. Runs inside the DTK image.
#
# Env:  RELEASE_VERSION, RELEASE_ARCH, DTK_IMAGE  echoed into the result so it names its release
#       DTK_RELEASE_FILE  default /etc/driver-toolkit-release.json
#       XCOM_RETURN       where to write the result (default /airflow/xcom/return.json)
# Result: {"version", "arch", "dtk_image", "toolkit": <the file: KERNEL_VERSION, RT_KERNEL_VERSION, RHEL_VERSION>}
set -euo pipefail

: "${RELEASE_VERSION:?}" "${RELEASE_ARCH:?}" "${DTK_IMAGE:?}"
RELEASE_FILE="${DTK_RELEASE_FILE:-/etc/driver-toolkit-release.json}"
RESULT_FILE="${XCOM_RETURN:-/airflow/xcom/return.json}"

if [[ ! -s "$RELEASE_FILE" ]]; then
  echo "ERROR: $RELEASE_FILE is missing in $DTK_IMAGE: is this a Driver Toolkit image?" >&2
  exit 1
fi
toolkit="$(cat "$RELEASE_FILE")"
printf 'Driver toolkit of %s-%s (%s):\n%s\n' "$RELEASE_VERSION" "$RELEASE_ARCH" "$DTK_IMAGE" "$toolkit"

mkdir -p "$(dirname "$RESULT_FILE")"
printf '{"version": "%s", "arch": "%s", "dtk_image": "%s", "toolkit": %s}\n' \
  "$RELEASE_VERSION" "$RELEASE_ARCH" "$DTK_IMAGE" "$toolkit" >"$RESULT_FILE"
