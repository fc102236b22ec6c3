#!/usr/bin/env bash
# Describe the cluster for planning: GPU nodes with their labels, the GPU Operator Deployment,
# the ClusterPolicy, the NVIDIADriver resources, any GPUCluster and the OpenShift version. Read-only.
#
# Env:  POLICY_NAME          ClusterPolicy name (usually gpu-cluster-policy)
#       OPERATOR_NAMESPACE   namespace of the GPU Operator (e.g. nvidia-gpu-operator)
#       OPERATOR_DEPLOYMENT  its Deployment (gpu-operator)
#       MODULE_SIGNING_PUBLIC_KEY, IMAGE_SIGNING_PUBLIC_KEY  public_key.der / cosign.pub, mounted from the
#                            signing Secrets when they exist (optional volumes: absent file = no key)
# Result: {"nodes": [{"name", "labels"}..., null], "operator": <Deployment|null>,
#          "policy": <ClusterPolicy|null>, "cluster_version": "<x.y.z>"|"", "cluster_channel": "<channel>"|"",
#          "nvidia_drivers": <NVIDIADriverList|null>, "gpu_clusters": <GPUClusterList|null>,
#          "signing_keys": {"module": "<sha256 of public_key.der>"|"", "image": "<sha256 of cosign.pub>"|""}}
#         (null: that CRD is not installed, as with an operator older than the kind)
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
# NVIDIADriver mode (useNvidiaDriverCRD, or the v26.7 DRA stack's GPUCluster): the drivers live in
# NVIDIADriver resources. A missing CRD means none; any other error (Forbidden...) stops the step.
err_file="$(mktemp)"
absent_crd() {
  if grep -q "doesn't have a resource type" "$err_file"; then
    echo null
  else
    cat "$err_file" >&2
    return 1
  fi
}
nvidia_drivers="$(kubectl get nvidiadrivers -o json 2>"$err_file" || absent_crd)"
gpu_clusters="$(kubectl get gpuclusters -o json 2>"$err_file" || absent_crd)"
rm -f "$err_file"
if [[ "$nvidia_drivers" == null ]]; then
  echo "no NVIDIADriver CRD: ClusterPolicy mode only"
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

write_result '{"nodes": [%snull], "operator": %s, "policy": %s, "cluster_version": "%s", "cluster_channel": "%s", "nvidia_drivers": %s, "gpu_clusters": %s, "signing_keys": {"module": "%s", "image": "%s"}}' \
  "$nodes" "$operator" "$policy" "$cluster_version" "$cluster_channel" "$nvidia_drivers" "$gpu_clusters" "$module_key" "$image_key"
