#!/usr/bin/env bash
# Write the upgrade-readiness ConfigMap (precompiled_drivers.readiness.configmap) in the pipeline namespace.
#
# Env:  CONFIGMAP_NAME  the ConfigMap's name (precompiled-drivers-readiness)
#       NAMESPACE       the pipeline namespace
#       CONFIGMAP_JSON  the whole ConfigMap, computed by the pipeline
# Result: {"configmap": "<namespace>/<name>", "action": "created" | "updated"}
set -euo pipefail

: "${CONFIGMAP_NAME:?CONFIGMAP_NAME must name the readiness ConfigMap}"
: "${NAMESPACE:?NAMESPACE must name the pipeline namespace}"
: "${CONFIGMAP_JSON:?CONFIGMAP_JSON must hold the ConfigMap computed by the pipeline}"

# Replace (PUT) when it exists, else create: the Role grants get/update on this one name, create in the namespace.
fail() {
  echo "ERROR: could not $1 configmap/$CONFIGMAP_NAME in $NAMESPACE (see kubectl's message above)." \
    "This pod's ServiceAccount needs get/update on that ConfigMap and create on configmaps there." >&2
  exit 1
}
manifest="${HOME:-/tmp}/readiness-configmap.json"
printf '%s' "$CONFIGMAP_JSON" >"$manifest"
# --validate=false: the manifest is the pipeline's own, and validating it would need the API's OpenAPI document.
if kubectl_retry get configmap "$CONFIGMAP_NAME" -n "$NAMESPACE" -o name >/dev/null 2>&1; then
  action=updated
  kubectl_retry replace -n "$NAMESPACE" --validate=false -f "$manifest" >/dev/null || fail replace
else
  action=created
  kubectl_retry create -n "$NAMESPACE" --validate=false -f "$manifest" >/dev/null || fail create
fi
echo "configmap/$CONFIGMAP_NAME in $NAMESPACE $action:"
kubectl_retry get configmap "$CONFIGMAP_NAME" -n "$NAMESPACE" -o jsonpath='{.data}'
echo

write_result '{"configmap": "%s/%s", "action": "%s"}' "$NAMESPACE" "$CONFIGMAP_NAME" "$action"
