#!/usr/bin/env bash
# Build one precompiled driver image with NVIDIA's Makefile and push it to the staging registry.
#
# Env:  DRIVER_REPO_URL, DRIVER_REPO_REF  NVIDIA/gpu-driver-container (or a mirror) at a pinned ref
#       BUILD_DIR          rhel8/precompiled | rhel9/precompiled | rhel10/precompiled
#       DRIVER_VERSION, KERNEL_VERSION (with arch), RHEL_VERSION, CUDA_VERSION, OS_TAG, BUILD_ARCH,
#       DRIVER_OPEN, DRIVER_TOOLKIT_IMAGE   the Makefile's variables
#       KERNEL_MODULE_TYPE, MODULE_TYPE_LABEL  open|proprietary, recorded as this image label
#       STAGING_IMAGE      where the built image goes (the Makefile's tag, under the staging repository)
#       IMAGE, TAG         the final reference and tag, echoed for the push step
#       PULL_SECRET_FILE, RHSM_ORG_FILE, RHSM_ACTIVATIONKEY_FILE  mounted secret files
#       TLS_VERIFY         true|false;  CONTAINERS_STORAGE  podman's graph root (an emptyDir)
# Result: {"image", "tag", "staging_image", "digest"}
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

for name in DRIVER_REPO_URL DRIVER_REPO_REF BUILD_DIR DRIVER_VERSION KERNEL_VERSION RHEL_VERSION CUDA_VERSION \
  OS_TAG BUILD_ARCH DRIVER_OPEN KERNEL_MODULE_TYPE MODULE_TYPE_LABEL DRIVER_TOOLKIT_IMAGE STAGING_IMAGE IMAGE TAG \
  PULL_SECRET_FILE RHSM_ORG_FILE RHSM_ACTIVATIONKEY_FILE; do
  if [[ -z "${!name:-}" ]]; then
    echo "ERROR: $name is not set; the pipeline passes every build input as an environment variable." >&2
    exit 2
  fi
done
TLS_VERIFY="${TLS_VERIFY:-true}"
workdir="$(mktemp -d)"
podman_args=(--root "${CONTAINERS_STORAGE:-$workdir/storage}")

echo "Fetching $DRIVER_REPO_URL at $DRIVER_REPO_REF"
git -C "$workdir" init -q recipe
git -C "$workdir/recipe" fetch -q --depth 1 "$DRIVER_REPO_URL" "$DRIVER_REPO_REF"
git -C "$workdir/recipe" checkout -q FETCH_HEAD

staging_repo="${STAGING_IMAGE%:*}"
image_registry="${staging_repo%/*}"
image_name="${staging_repo##*/}"

echo "Building $STAGING_IMAGE in $BUILD_DIR (kernel $KERNEL_VERSION, RHEL $RHEL_VERSION, OS tag $OS_TAG)"
# NVIDIA's recipe tests with '==', which needs bash; podman takes the pull secret as --authfile.
make -C "$workdir/recipe/$BUILD_DIR" SHELL=/bin/bash image \
  CONTAINER_TOOL="podman ${podman_args[*]}" \
  DRIVER_VERSION="$DRIVER_VERSION" KERNEL_VERSION="$KERNEL_VERSION" RHEL_VERSION="$RHEL_VERSION" \
  CUDA_VERSION="$CUDA_VERSION" OS_TAG="$OS_TAG" BUILD_ARCH="$BUILD_ARCH" DRIVER_OPEN="$DRIVER_OPEN" \
  DRIVER_TOOLKIT_IMAGE="$DRIVER_TOOLKIT_IMAGE" PULL_SECRET_FILE="$PULL_SECRET_FILE" \
  RHSM_ORG_FILE="$RHSM_ORG_FILE" RHSM_ACTIVATIONKEY_FILE="$RHSM_ACTIVATIONKEY_FILE" \
  IMAGE_REGISTRY="$image_registry" IMAGE_NAME="$image_name" \
  DRIVER_EPOCH="${DRIVER_EPOCH:-1}" BUILDER_USER="precompiled-drivers" BUILDER_EMAIL="precompiled-drivers@localhost"

# NVIDIA's Dockerfile records no module type; a FROM-only build adds the label (config only, no layer), so a
# later run can tell a tag built with the other type from one it may reuse.
mkdir "$workdir/label"
printf 'FROM %s\n' "$STAGING_IMAGE" >"$workdir/label/Containerfile"
podman "${podman_args[@]}" build --label "$MODULE_TYPE_LABEL=$KERNEL_MODULE_TYPE" --tag "$STAGING_IMAGE" \
  "$workdir/label"

push_auth=()
if token_authfile "${image_registry%%/*}" "$workdir/auth.json"; then
  push_auth=(--authfile "$workdir/auth.json")
fi
podman "${podman_args[@]}" push "${push_auth[@]}" --tls-verify="$TLS_VERIFY" \
  --digestfile "$workdir/digest" "$STAGING_IMAGE"
digest="$(cat "$workdir/digest")"
echo "staged $STAGING_IMAGE@$digest"

write_result '{"image": "%s", "tag": "%s", "staging_image": "%s", "digest": "%s"}' \
  "$IMAGE" "$TAG" "$STAGING_IMAGE" "$digest"
