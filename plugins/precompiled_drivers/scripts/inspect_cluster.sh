#!/usr/bin/env bash
# Describe the cluster for planning: GPU nodes with their labels, the GPU Operator Deployment,
# the ClusterPolicy and the OpenShift version. Read-only.
#
# Env:  POLICY_NAME          ClusterPolicy name (usually gpu-cluster-policy)
#       OPERATOR_NAMESPACE   namespace of the GPU Operator (e.g. nvidia-gpu-operator)
#       OPERATOR_DEPLOYMENT  its Deployment (gpu-operator)
#       MODULE_SIGNING_PUBLIC_KEY, IMAGE_SIGNING_PUBLIC_KEY  public_key.der / cosign.pub, mounted from the
#                            signing Secrets when they exist (optional volumes: absent file = no key)
# Result: {"nodes": [{"name", "labels"}..., null], "operator": <Deployment|null>,
#          "policy": <ClusterPolicy|null>, "cluster_version": "<x.y.z>"|"", "cluster_channel": "<channel>"|"",
#          "signing_keys": {"module": "<sha256 of public_key.der>"|"", "image": "<sha256 of cosign.pub>"|""}}
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

: "${POLICY_NAME:?}" "${OPERATOR_NAMESPACE:?}" "${OPERATOR_DEPLOYMENT:?}"

# One JSON object per node, each followed by a comma; the result closes the list with null.
node_template='{range .items[*]}{"{\"name\":\""}{.metadata.name}{"\",\"labels\":"}{.metadata.labels}{"},"}{end}'
nodes="$(kubectl get nodes -l nvidia.com/gpu.present=true -o "jsonpath=$node_template")"
echo "GPU nodes:"
kubectl get nodes -l nvidia.com/gpu.present=true \
  -L feature.node.kubernetes.io/kernel-version.full \
  -L feature.node.kubernetes.io/system-os_release.ID \
  -L feature.node.kubernetes.io/system-os_release.VERSION_ID

if ! operator="$(kubectl get deployment "$OPERATOR_DEPLOYMENT" -n "$OPERATOR_NAMESPACE" -o json)"; then
  echo "WARNING: deployment/$OPERATOR_DEPLOYMENT not found in $OPERATOR_NAMESPACE; the form's" \
    "operator_version must then say which GPU Operator runs." >&2
  operator=null
fi
if ! policy="$(kubectl get clusterpolicy "$POLICY_NAME" -o json)"; then
  echo "WARNING: clusterpolicy/$POLICY_NAME not found: builds can run, the rollout cannot." >&2
  policy=null
fi
# Not every cluster is OpenShift (or lets us read it): the version is optional.
cluster_version="$(kubectl get clusterversion version -o 'jsonpath={.status.desired.version}' 2>/dev/null || true)"
cluster_channel="$(kubectl get clusterversion version -o 'jsonpath={.spec.channel}' 2>/dev/null || true)"
echo "cluster version: ${cluster_version:-unknown} (channel ${cluster_channel:-unknown})"

# Only public keys are mounted here; their fingerprints tell the planning whether signing can happen.
key_sha256() {
  if [[ -n "${1:-}" && -s "$1" ]]; then sha256sum "$1" | cut -d' ' -f1; fi
}
module_key="$(key_sha256 "${MODULE_SIGNING_PUBLIC_KEY:-}")"
image_key="$(key_sha256 "${IMAGE_SIGNING_PUBLIC_KEY:-}")"
echo "module signing key (sha256 of public_key.der): ${module_key:-none}; image signing key (sha256 of cosign.pub): ${image_key:-none}"

write_result '{"nodes": [%snull], "operator": %s, "policy": %s, "cluster_version": "%s", "cluster_channel": "%s", "signing_keys": {"module": "%s", "image": "%s"}}' \
  "$nodes" "$operator" "$policy" "$cluster_version" "$cluster_channel" "$module_key" "$image_key"
