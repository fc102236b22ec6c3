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
#       MODULE_SIGNING_DIR  where the Secure Boot key pair (private_key.priv, public_key.der) is mounted when
#                          its Secret exists; REQUIRE_MODULE_SIGNING=true refuses to build without it
#       MODULE_KEY_LABEL   the label recording sha256 of public_key.der (or that the throw-away key was used)
#       PROVENANCE_LABELS  KEY=VALUE lines: labels put on the image (releases, DTK, kernel, versions, recipe)
# Result: {"image", "tag", "staging_image", "digest", "module_key_sha256": "<hex>"|""}
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
REQUIRE_MODULE_SIGNING="${REQUIRE_MODULE_SIGNING:-false}"
workdir="$(mktemp -d)"
# The private key is copied into the recipe's folder for the build: removed whatever happens.
trap 'rm -rf "$workdir/recipe"' EXIT
podman_args=(--root "${CONTAINERS_STORAGE:-$workdir/storage}")

# Secure Boot: both halves of the key pair, or neither (NVIDIA's Dockerfile then signs with a throw-away key).
private_key="${MODULE_SIGNING_DIR:-/nonexistent}/private_key.priv"
public_key="${MODULE_SIGNING_DIR:-/nonexistent}/public_key.der"
module_key=""
THROWAWAY_KEY="none (NVIDIA throw-away key: Secure Boot nodes refuse these modules)"
if [[ -s "$private_key" && -s "$public_key" ]]; then
  module_key="$(sha256sum "$public_key" | cut -d' ' -f1)"
  echo "Signing the kernel modules with the organisation's key (sha256 of public_key.der: $module_key)"
elif [[ -s "$private_key" || -s "$public_key" ]]; then
  echo "ERROR: the module signing Secret holds only one of private_key.priv and public_key.der; it needs" \
    "both (the key pair your Secure Boot nodes trust)." >&2
  exit 2
elif [[ "$REQUIRE_MODULE_SIGNING" == "true" ]]; then
  echo "ERROR: module signing is required (PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING=true) but no key pair" \
    "is mounted: create the module signing Secret (PRECOMPILED_DRIVERS_MODULE_SIGNING_SECRET) with" \
    "private_key.priv and public_key.der." >&2
  exit 2
else
  echo "WARNING: no module signing Secret: NVIDIA's Dockerfile signs with a throw-away key that Secure Boot" \
    "nodes do not trust."
fi

echo "Fetching $DRIVER_REPO_URL at $DRIVER_REPO_REF"
git -C "$workdir" init -q recipe
git -C "$workdir/recipe" fetch -q --depth 1 "$DRIVER_REPO_URL" "$DRIVER_REPO_REF"
git -C "$workdir/recipe" checkout -q FETCH_HEAD
if [[ -n "$module_key" ]]; then
  # Where NVIDIA's Dockerfile picks them up (COPY ... private_key.priv* public_key.der* in the builder stage;
  # only the signed modules reach the final image).
  install -m 0600 "$private_key" "$workdir/recipe/$BUILD_DIR/private_key.priv"
  install -m 0644 "$public_key" "$workdir/recipe/$BUILD_DIR/public_key.der"
fi

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

# NVIDIA's Dockerfile records no module type nor where the image comes from; a FROM-only build adds the
# labels (config only, no layer): a later run can tell a tag built with the other module type from one it
# may reuse, and anyone can read the image's provenance with `skopeo inspect`.
labels=(--label "$MODULE_TYPE_LABEL=$KERNEL_MODULE_TYPE")
if [[ -n "${MODULE_KEY_LABEL:-}" ]]; then
  labels+=(--label "$MODULE_KEY_LABEL=${module_key:-$THROWAWAY_KEY}")
fi
while IFS= read -r line; do
  [[ -n "$line" ]] && labels+=(--label "$line")
done <<<"${PROVENANCE_LABELS:-}"
mkdir "$workdir/label"
printf 'FROM %s\n' "$STAGING_IMAGE" >"$workdir/label/Containerfile"
podman "${podman_args[@]}" build "${labels[@]}" --tag "$STAGING_IMAGE" "$workdir/label"

push_auth=()
if token_authfile "${image_registry%%/*}" "$workdir/auth.json"; then
  push_auth=(--authfile "$workdir/auth.json")
fi
podman "${podman_args[@]}" push "${push_auth[@]}" --tls-verify="$TLS_VERIFY" \
  --digestfile "$workdir/digest" "$STAGING_IMAGE"
digest="$(cat "$workdir/digest")"
echo "staged $STAGING_IMAGE@$digest"

write_result '{"image": "%s", "tag": "%s", "staging_image": "%s", "digest": "%s", "module_key_sha256": "%s"}' \
  "$IMAGE" "$TAG" "$STAGING_IMAGE" "$digest" "$module_key"
