#!/usr/bin/env bash
# Wait until the GPU Operator runs the new precompiled driver image on every expected kernel.
#
# Right after a patch the old driver pods are still Running, so only pods of the new generation count:
# created at or after PATCHED_AT, running the expected image, ready, and with an imageID that ends with the
# pushed digest. A kernel is OK when at least one such pod exists and no other pod created since the patch
# by the same DaemonSet (the pod's controller ownerReference) is unready or runs something else. The
# ClusterPolicy must also report ready. The DaemonSet names come from the plan (rollout.py, which names them
# as the operator does); this script never rebuilds one.
#
# Env:  POLICY_NAME         ClusterPolicy name (usually gpu-cluster-policy)
#       OPERATOR_NAMESPACE  namespace of the driver DaemonSets (e.g. nvidia-gpu-operator)
#       PATCHED_AT          RFC3339 UTC time of the patch, e.g. 2025-01-31T12:00:00Z
#       EXPECTED            lines <kernel> <DaemonSet> <image ref> <sha256:digest>; a kernel with several
#                           lines accepts any of those images (the operator takes ONE OS tag for the whole
#                           cluster, from whichever GPU node it lists first), each on its own digest
#       TIMEOUT_SECONDS     give up after this long (default 1800)
#       POLL_SECONDS        wait between polls (default 15)
#       DRY_RUN             true: the patch step only printed its patch; report that and exit 0
# Result: {"verified": true|false, "policy_state": "...", "kernels": {"<kernel>": {...}}}
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

if [[ "${DRY_RUN:-false}" == "true" ]]; then
  echo "DRY_RUN=true: the ClusterPolicy was not patched, so there is no rollout to verify."
  write_result '{"verified": false, "dry_run": true, "kernels": {}}'
  exit 0
fi

: "${POLICY_NAME:?POLICY_NAME must name the ClusterPolicy (e.g. gpu-cluster-policy)}"
: "${OPERATOR_NAMESPACE:?OPERATOR_NAMESPACE must name the GPU Operator namespace}"
: "${PATCHED_AT:?PATCHED_AT must hold the patch time (RFC3339 UTC, from the patch step)}"
: "${EXPECTED:?EXPECTED must list one line per kernel image: <kernel> <DaemonSet> <image ref> <sha256 digest>}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-1800}"
POLL_SECONDS="${POLL_SECONDS:-15}"
# Byte-wise string comparison for the timestamp checks below, whatever locale the image sets.
export LC_ALL=C

die() {
  echo "ERROR: $*" >&2
  exit 2
}

[[ "$PATCHED_AT" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
  die "PATCHED_AT must look like 2025-01-31T12:00:00Z (UTC, seconds, Z), got '$PATCHED_AT'."
[[ "$TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || die "TIMEOUT_SECONDS must be a whole number, got '$TIMEOUT_SECONDS'."
[[ "$POLL_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "POLL_SECONDS must be a positive whole number, got '$POLL_SECONDS'."

kernels=()    # distinct, in order of first appearance
daemonsets=() # per kernel: the DaemonSet whose pods serve it
wants=()      # per kernel: "<image> <digest>" lines it accepts
while read -r kernel daemonset image digest extra; do
  [[ -z "${kernel:-}" ]] && continue
  # Values end up in the JSON result, so only the characters these names can hold are accepted.
  [[ -z "${extra:-}" && -n "${digest:-}" ]] ||
    die "each EXPECTED line needs exactly '<kernel> <DaemonSet> <image ref> <digest>'; got '$kernel ${daemonset:-} ${image:-} ${digest:-} ${extra:-}'."
  [[ "$kernel" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "EXPECTED kernel '$kernel' is not a kernel release."
  [[ "$daemonset" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] ||
    die "EXPECTED DaemonSet '$daemonset' is not a DNS-1123 name."
  [[ "$image" =~ ^[A-Za-z0-9][A-Za-z0-9./:_@+-]*$ ]] || die "EXPECTED image ref '$image' is not an image reference."
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "EXPECTED digest '$digest' must be sha256:<64 hex>."
  found=""
  for i in "${!kernels[@]}"; do
    [[ "${kernels[$i]}" == "$kernel" ]] && found="$i"
  done
  if [[ -z "$found" ]]; then
    kernels+=("$kernel")
    daemonsets+=("$daemonset")
    wants+=("$image $digest")
  else
    [[ "${daemonsets[$found]}" == "$daemonset" ]] ||
      die "EXPECTED names two DaemonSets for kernel '$kernel': ${daemonsets[$found]} and $daemonset."
    wants[found]+=$'\n'"$image $digest"
  fi
done <<<"$EXPECTED"
((${#kernels[@]} > 0)) || die "EXPECTED lists no kernel."

# name|owning DaemonSet|creationTimestamp|image|ready|imageID|waiting reason per pod ('|': read collapses
# empty tab fields).
POD_COLUMNS='{range .items[*]}{.metadata.name}{"|"}'
POD_COLUMNS+='{.metadata.ownerReferences[?(@.kind=="DaemonSet")].name}{"|"}{.metadata.creationTimestamp}{"|"}'
POD_COLUMNS+='{.spec.containers[?(@.name=="nvidia-driver-ctr")].image}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[?(@.name=="nvidia-driver-ctr")].ready}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[?(@.name=="nvidia-driver-ctr")].imageID}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[?(@.name=="nvidia-driver-ctr")].state.waiting.reason}{"\n"}{end}'

# Per-kernel results of the latest poll, indexed like kernels[].
k_status=()
k_seen=()
k_ready=()
k_image=()
k_reason=()

# Evaluate one kernel against the pod table in $pods; fills the k_* arrays at index $1.
# The digest a kernel's pods must run for image $2 ("" when the kernel does not accept that image).
wanted_digest() {
  local want_image want_digest
  while read -r want_image want_digest; do
    [[ "$want_image" == "$2" ]] && { printf '%s' "$want_digest"; return 0; }
  done <<<"${wants[$1]}"
  return 0
}

check_kernel() {
  local i="$1" accepted
  local daemonset="${daemonsets[$1]}"
  local name owner created image ready image_id waiting want_digest
  local all=0 new=0 good=0 unready=0 wrong=0 seen_image="" wrong_note="" waits=""
  accepted="$(cut -d' ' -f1 <<<"${wants[$1]}" | paste -sd' ')"
  while IFS='|' read -r name owner created image ready image_id waiting; do
    [[ -n "$name" && "$owner" == "$daemonset" ]] || continue
    all=$((all + 1))
    # RFC3339 UTC strings of equal shape compare like the instants they name.
    [[ "$created" > "$PATCHED_AT" || "$created" == "$PATCHED_AT" ]] || continue
    new=$((new + 1))
    seen_image="$image"
    if [[ "$ready" != "true" ]]; then
      unready=$((unready + 1))
      [[ -z "$waiting" || "$waits" == *"$waiting"* ]] || waits+="${waits:+, }$waiting"
      continue
    fi
    want_digest="$(wanted_digest "$i" "$image")"
    if [[ -z "$want_digest" ]]; then
      wrong=$((wrong + 1))
      wrong_note="pod $name runs $image"
    elif [[ "$image_id" != *"$want_digest" ]]; then
      wrong=$((wrong + 1))
      wrong_note="pod $name has imageID '${image_id}', not digest $want_digest (the tag was pushed again"
      wrong_note+=" after the pod pulled it; the operator restarts driver pods only when their DaemonSet"
      wrong_note+=" changes: delete the pod, or drain the node, to load the new image)"
    else
      good=$((good + 1))
    fi
  done <<<"$pods"

  k_seen[i]="$new/$all"
  k_ready[i]="$good"
  k_image[i]="${seen_image:--}"
  k_status[i]="waiting"
  if ((new == 0)); then
    k_reason[i]="no pod of DaemonSet $daemonset created since the patch ($all older)"
  elif ((unready > 0)); then
    k_reason[i]="$unready of $new new pod(s) not ready${waits:+ ($waits)}"
    if [[ "$waits" == *ImagePull* || "$waits" == *ErrImage* ]]; then
      k_reason[i]+="; check that $seen_image exists and the nodes can pull it"
    fi
  elif ((wrong > 0)); then
    k_reason[i]="$wrong_note; expected one of: $accepted"
  elif ((good == 0)); then
    k_reason[i]="no ready pod runs one of: $accepted"
  else
    k_status[i]="ok"
    k_reason[i]="$good new pod(s) ready with the expected image and digest"
  fi
}

# Escape a value for a JSON string (kubectl output has no newlines; quotes and backslashes are possible).
json_str() {
  local s="${1//\\/\\\\}"
  printf '"%s"' "${s//\"/\\\"}"
}

# Writes the result JSON (verified flag in $1).
write_verdict() {
  local i sep="" body=""
  for i in "${!kernels[@]}"; do
    body+="$(printf '%s"%s": {"status": "%s", "daemonset": "%s", "pods_new_of_all": "%s", "ready": %s, "image": %s, "digest": "%s", "accepted": "%s", "reason": %s}' \
      "$sep" "${kernels[$i]}" "${k_status[$i]}" "${daemonsets[$i]}" "${k_seen[$i]}" "${k_ready[$i]}" "$(json_str "${k_image[$i]}")" \
      "$(wanted_digest "$i" "${k_image[$i]}")" "$(cut -d' ' -f1 <<<"${wants[$i]}" | paste -sd' ')" \
      "$(json_str "${k_reason[$i]}")")"
    sep=", "
  done
  write_result '{"verified": %s, "policy_state": "%s", "patched_at": "%s", "kernels": {%s}}' \
    "$1" "$state" "$PATCHED_AT" "$body"
}

deadline=$(($(date +%s) + TIMEOUT_SECONDS))
poll=0
state="unknown"
while true; do
  poll=$((poll + 1))
  if ! pods="$(kubectl get pods -n "$OPERATOR_NAMESPACE" \
    -l app=nvidia-driver-daemonset,nvidia.com/precompiled=true -o jsonpath="$POD_COLUMNS")"; then
    echo "poll $poll: WARNING: could not list driver pods in namespace $OPERATOR_NAMESPACE; retrying." >&2
    pods=""
  fi
  if ! state="$(kubectl get clusterpolicy "$POLICY_NAME" -o jsonpath='{.status.state}')"; then
    echo "poll $poll: WARNING: could not read clusterpolicy/$POLICY_NAME; retrying." >&2
    state="unreadable"
  fi
  # The state must match the small enum the CRD allows before it goes into JSON.
  [[ "$state" =~ ^[A-Za-z]+$ ]] || state="unknown"

  all_ok=true
  for i in "${!kernels[@]}"; do
    check_kernel "$i"
    [[ "${k_status[$i]}" == "ok" ]] || all_ok=false
    echo "poll $poll: kernel ${kernels[$i]}: ${k_status[$i]} (new/all pods ${k_seen[$i]}, ready ${k_ready[$i]}): ${k_reason[$i]}"
  done
  echo "poll $poll: clusterpolicy/$POLICY_NAME status.state=$state"

  if [[ "$all_ok" == "true" && "$state" == "ready" ]]; then
    write_verdict true
    echo "Verified: every expected kernel runs its new precompiled driver image and the ClusterPolicy is ready."
    exit 0
  fi
  now=$(date +%s)
  if ((now >= deadline)); then
    break
  fi
  sleep "$(((deadline - now) < POLL_SECONDS ? (deadline - now) : POLL_SECONDS))"
done

write_verdict false
echo "ERROR: rollout not verified within ${TIMEOUT_SECONDS}s (clusterpolicy/$POLICY_NAME state: $state)." >&2
printf '%-36s %-9s %-5s %-8s %-60s %s\n' KERNEL "NEW/ALL" READY STATUS IMAGE REASON >&2
for i in "${!kernels[@]}"; do
  printf '%-36s %-9s %-5s %-8s %-60s %s\n' "${kernels[$i]}" "${k_seen[$i]}" "${k_ready[$i]}" \
    "${k_status[$i]}" "${k_image[$i]}" "${k_reason[$i]}" >&2
done
echo "Check the driver pods (kubectl get pods -n $OPERATOR_NAMESPACE -l app=nvidia-driver-daemonset) and their" \
  "logs; the pipeline's rollback step restores the previous driver spec." >&2
exit 1
