#!/usr/bin/env bash
# Read the kernel and RHEL version a Driver Toolkit image was built for. Runs inside the DTK image.
#
# Env:  RELEASE_VERSION, RELEASE_ARCH, DTK_IMAGE  echoed into the result so it names its release
#       DTK_RELEASE_FILE  default /etc/driver-toolkit-release.json
#       DTK_IMAGE_10, DTK_RELEASE_FILE_10  when the payload also has driver-toolkit-10 (RHEL 10 stream):
#                         its image, and where the pod's init container copied its release file
# Result: {"version", "arch", "dtk_image", "toolkit": <the file: KERNEL_VERSION, RT_KERNEL_VERSION, RHEL_VERSION>}
#         plus "dtk_image_10" and "toolkit_10" for a two-stream release.
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${RELEASE_VERSION:?}" "${RELEASE_ARCH:?}" "${DTK_IMAGE:?}"
RELEASE_FILE="${DTK_RELEASE_FILE:-/etc/driver-toolkit-release.json}"

if [[ ! -s "$RELEASE_FILE" ]]; then
  echo "ERROR: $RELEASE_FILE is missing in $DTK_IMAGE: is this a Driver Toolkit image?" >&2
  exit 1
fi
toolkit="$(cat "$RELEASE_FILE")"
printf 'Driver toolkit of %s-%s (%s):\n%s\n' "$RELEASE_VERSION" "$RELEASE_ARCH" "$DTK_IMAGE" "$toolkit"

stream_10=""
if [[ -n "${DTK_IMAGE_10:-}" ]]; then
  : "${DTK_RELEASE_FILE_10:?}"
  if [[ ! -s "$DTK_RELEASE_FILE_10" ]]; then
    echo "ERROR: the release file of driver-toolkit-10 ($DTK_IMAGE_10) was not copied to" \
      "$DTK_RELEASE_FILE_10 by the init container: is it a Driver Toolkit image?" >&2
    exit 1
  fi
  toolkit_10="$(cat "$DTK_RELEASE_FILE_10")"
  printf 'driver-toolkit-10 of %s-%s (%s):\n%s\n' "$RELEASE_VERSION" "$RELEASE_ARCH" "$DTK_IMAGE_10" "$toolkit_10"
  stream_10="$(printf ', "dtk_image_10": "%s", "toolkit_10": %s' "$DTK_IMAGE_10" "$toolkit_10")"
fi

write_result '{"version": "%s", "arch": "%s", "dtk_image": "%s", "toolkit": %s%s}' \
  "$RELEASE_VERSION" "$RELEASE_ARCH" "$DTK_IMAGE" "$toolkit" "$stream_10"
