#!/usr/bin/env bash
# Roll out NVIDIADriver resources stage by stage (the GPU Operator's NVIDIADriver mode), canary first.
#
# Each stage is one NVIDIADriver, computed by the pipeline (precompiled_drivers.nvidia_driver.plan_stages):
# - patch: a JSON patch whose first op `test`s the whole spec as the pipeline read it (a concurrent change is
#   refused by the API server, 422), then sets repository, image and version; undone by the exact reverse
#   patch (guarded by the applied spec);
# - replace: usePrecompiled is immutable, so the CR is deleted and created again as a precompiled one keeping
#   every other field; only after a local check that it still has the UID and spec the pipeline read, and
#   deleted with that UID and the checked resourceVersion as preconditions (any change since: 409, kept).
#   Undone by deleting the replacement (only ours: its UID) and creating the original as it was read (name,
#   labels, annotations, spec; the API server assigns the rest).
# Then the stage is verified: on every node of each of its pools a driver pod of a DaemonSet owned by that
# NVIDIADriver (ownerReferences) runs the expected image, is Ready, and its imageID ends with the pushed
# digest; and the NVIDIADriver reports status.state ready. The first stage that fails is restored exactly
# and the rollout stops; stages already verified stay on the new driver.
# A stage whose NVIDIADriver already has the target spec (a re-run, or a retried try) is only verified.
#
# Env:  OPERATOR_NAMESPACE  namespace of the driver DaemonSets (e.g. nvidia-gpu-operator)
#       STAGES              one line per stage, in order: <NVIDIADriver name> <patch|replace>
#       STAGE_<n>_APPLY     (n from 1) patch: the guarded JSON patch; replace: the new NVIDIADriver (JSON)
#       STAGE_<n>_UNDO      patch: the reverse JSON patch; replace: the original NVIDIADriver (JSON)
#       STAGE_<n>_GUARD     JSON patch of `test` ops: the NVIDIADriver is still as read (UID, spec)
#       STAGE_<n>_TARGET    JSON patch of one `test` op: the NVIDIADriver already has the stage's spec
#       STAGE_<n>_EXPECTED  lines <image ref> <sha256:digest> <DaemonSet, or - when named after a new UID>
#                           <node,node,...>: what verification must see per pool
#       STAGE_<n>_CHECKS    optional: lines <kernel> <check pod JSON> (steps/check_gpu_workload.check_pod, held
#                           to the NVIDIADriver's nodes): once the stage verifies, each pod must run its CUDA
#                           workload to success on one GPU of that pool, else the stage is restored
#       NAMESPACE           where the check pods run (the pipeline's namespace; with CHECKS)
#       CHECK_TIMEOUT_SECONDS  a stage's GPU checks give up after this long (default 600)
#       TIMEOUT_SECONDS     verification of one stage gives up after this long (default 1800)
#       POLL_SECONDS        wait between polls (default 15)
#       DRY_RUN             true: print every stage and its undo, change nothing
#       API_ATTEMPTS, API_RETRY_SECONDS  kubectl_retry (lib.sh): transient API errors are retried, a refusal
#                           (422 from a guard, 403, 404...) never.
# Result: {"verified": true|false, "dry_run": true|false, "stages": [{"driver", "action", "outcome", "reason"}]}
#         outcome per stage: verified | restored (failed, then put back as it was) | restore_failed |
#         not_applied (refused, nothing changed) | not_started. Written also when the step fails.
# Runs after lib.sh (prepended in the pod): write_result, token_authfile, kubectl_retry and their env.
set -euo pipefail

DRY_RUN="${DRY_RUN:-false}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-1800}"
POLL_SECONDS="${POLL_SECONDS:-15}"
: "${OPERATOR_NAMESPACE:?OPERATOR_NAMESPACE must name the GPU Operator namespace (e.g. nvidia-gpu-operator)}"
: "${STAGES:?STAGES must list the stages computed by the pipeline: <NVIDIADriver> <patch|replace> per line}"

die() {
  echo "ERROR: $*" >&2
  exit 2
}

case "$DRY_RUN" in
  true | false) ;;
  *) die "DRY_RUN must be 'true' or 'false', got '$DRY_RUN'." ;;
esac
[[ "$TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || die "TIMEOUT_SECONDS must be a whole number, got '$TIMEOUT_SECONDS'."
[[ "$POLL_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "POLL_SECONDS must be a positive whole number, got '$POLL_SECONDS'."
CHECK_TIMEOUT_SECONDS="${CHECK_TIMEOUT_SECONDS:-600}"
[[ "$CHECK_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] ||
  die "CHECK_TIMEOUT_SECONDS must be a whole number, got '$CHECK_TIMEOUT_SECONDS'."

names=()
actions=()
while read -r name action extra; do
  [[ -z "${name:-}" ]] && continue
  [[ -z "${extra:-}" && -n "${action:-}" ]] || die "each STAGES line needs exactly '<NVIDIADriver> <patch|replace>'."
  [[ "$name" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die "STAGES name '$name' is not a DNS-1123 name."
  [[ "$action" == "patch" || "$action" == "replace" ]] || die "STAGES action '$action' must be patch or replace."
  names+=("$name")
  actions+=("$action")
done <<<"$STAGES"
((${#names[@]} > 0)) || die "STAGES lists no stage."

# stage_var N KIND: the value of STAGE_<N>_<KIND> (empty when unset).
stage_var() {
  local var="STAGE_$1_$2"
  printf '%s' "${!var:-}"
}
for i in "${!names[@]}"; do
  for kind in APPLY UNDO GUARD TARGET EXPECTED; do
    [[ -n "$(stage_var $((i + 1)) "$kind")" ]] || die "STAGE_$((i + 1))_$kind is empty (stage of ${names[$i]})."
  done
  # Checked now, before any stage changes anything.
  while read -r kernel manifest; do
    [[ -n "${kernel:-}" ]] || continue
    [[ "$kernel" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ && "${manifest:-}" == "{"*"}" ]] ||
      die "STAGE_$((i + 1))_CHECKS needs lines '<kernel> <check pod JSON>'."
    [[ -n "${NAMESPACE:-}" ]] || die "NAMESPACE must name the namespace the GPU check pods run in."
  done <<<"$(stage_var $((i + 1)) CHECKS)"
done

outcomes=()
reasons=()
for i in "${!names[@]}"; do
  outcomes+=("not_started")
  reasons+=("")
done

# Escape a value for a JSON string (kubectl output has no newlines; quotes and backslashes are possible).
json_str() {
  local s="${1//\\/\\\\}"
  printf '"%s"' "${s//\"/\\\"}"
}

write_verdict() {
  local i sep="" body=""
  for i in "${!names[@]}"; do
    body+="$(printf '%s{"driver": "%s", "action": "%s", "outcome": "%s", "reason": %s}' "$sep" "${names[$i]}" \
      "${actions[$i]}" "${outcomes[$i]}" "$(json_str "${reasons[$i]}")")"
    sep=", "
  done
  write_result '{"verified": %s, "dry_run": %s, "stages": [%s]}' "$1" "$DRY_RUN" "$body"
}

if [[ "$DRY_RUN" == "true" ]]; then
  for i in "${!names[@]}"; do
    n=$((i + 1))
    printf 'Stage %s: %s NVIDIADriver %s with:\n%s\n  undo:\n%s\n' "$n" "${actions[$i]}" "${names[$i]}" \
      "$(stage_var "$n" APPLY)" "$(stage_var "$n" UNDO)"
    reasons[i]="dry run: nothing applied"
  done
  echo "DRY_RUN=true: no NVIDIADriver was changed."
  write_verdict false
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# passes FILE PATCH: true when the `test` ops of PATCH hold on the object in FILE (checked locally).
passes() {
  kubectl patch --local -f "$1" --type=json -p "$2" -o name >/dev/null 2>&1
}

# read_driver NAME FILE: the NVIDIADriver as JSON in FILE; returns 1 when it does not exist (or is unreadable).
read_driver() {
  local found
  found="$(kubectl_retry get nvidiadriver "$1" --ignore-not-found -o json)" || return 1
  [[ -n "$found" ]] || return 1
  printf '%s\n' "$found" >"$2"
}

# uid_of NAME: the NVIDIADriver's UID, empty when it does not exist.
uid_of() {
  kubectl_retry get nvidiadriver "$1" --ignore-not-found -o jsonpath='{.metadata.uid}'
}

# delete_exactly NAME UID [FILE]: delete the NVIDIADriver only while it still has that UID (and, with FILE, the
# resourceVersion of the object read into FILE): the API server refuses otherwise (409, DeleteOptions
# preconditions), so an object recreated or edited since it was checked is never deleted.
delete_exactly() {
  local version="" options="$work/delete-options.json"
  if [[ -n "${3:-}" ]]; then
    version="$(kubectl patch --local -f "$3" --type=merge -p '{}' -o 'jsonpath={.metadata.resourceVersion}')"
  fi
  printf '{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"%s"%s}}\n' "$2" \
    "${version:+,\"resourceVersion\":\"$version\"}" >"$options"
  kubectl_retry delete --raw "/apis/nvidia.com/v1alpha1/nvidiadrivers/$1" -f "$options" >/dev/null
}

# wait_gone NAME UID: wait until the NVIDIADriver with that UID is gone (deletion is asynchronous).
wait_gone() {
  local left=60
  while [[ "$(uid_of "$1" || true)" == "$2" ]]; do
    ((left-- > 0)) || return 1
    sleep 1
  done
}

# create_from JSON: create the NVIDIADriver described by JSON (kept in a file: never on a command line).
create_from() {
  local file="$work/create.json"
  printf '%s\n' "$1" >"$file"
  # The API server validates against the CRD (schema and CEL); client-side validation would need OpenAPI.
  kubectl_retry create --validate=false -f "$file"
}

applied_uid="" # the UID of the stage's NVIDIADriver once applied
changed=false  # whether this stage changed the cluster (then a failure is restored)

# apply_stage I: sets applied_uid and changed; on refusal, sets reasons[I] and returns 1.
apply_stage() {
  local i="$1" n=$(($1 + 1)) name="${names[$1]}" file="$work/current.json" old_uid
  changed=false
  applied_uid=""
  if ! read_driver "$name" "$file"; then
    reasons[i]="NVIDIADriver $name not found (or unreadable): deleted since the pipeline read it? Nothing changed"
    return 1
  fi
  old_uid="$(kubectl patch --local -f "$file" --type=merge -p '{}' -o jsonpath='{.metadata.uid}')"
  if passes "$file" "$(stage_var "$n" TARGET)"; then
    echo "Stage $n: NVIDIADriver $name already has the stage's spec (an earlier run or try applied it): verifying it."
    # Restorable all the same: to the spec this run read (a previous try's replacement: the original).
    changed=true
    applied_uid="$old_uid"
    return 0
  fi
  if [[ "${actions[$i]}" == "patch" ]]; then
    printf 'Stage %s: patching NVIDIADriver %s with:\n%s\n' "$n" "$name" "$(stage_var "$n" APPLY)"
    if ! kubectl_retry patch nvidiadriver "$name" --type=json -p "$(stage_var "$n" APPLY)"; then
      if read_driver "$name" "$file" && passes "$file" "$(stage_var "$n" TARGET)"; then
        echo "An earlier attempt had already applied the patch."
      else
        reasons[i]="the API server refused the patch of NVIDIADriver $name, nothing changed (a failed 'test' operation: it changed since the pipeline read it; run again so it is read afresh)"
        return 1
      fi
    fi
    changed=true
    applied_uid="$old_uid"
    return 0
  fi
  # replace: only the object the pipeline read, unchanged since.
  if ! passes "$file" "$(stage_var "$n" GUARD)"; then
    reasons[i]="NVIDIADriver $name changed since the pipeline read it (UID or spec): not replaced, nothing changed; run again so it is read afresh"
    return 1
  fi
  printf 'Stage %s: replacing NVIDIADriver %s (uid %s) by:\n%s\n' "$n" "$name" "$old_uid" "$(stage_var "$n" APPLY)"
  changed=true
  if ! delete_exactly "$name" "$old_uid" "$file" || ! wait_gone "$name" "$old_uid"; then
    reasons[i]="could not delete NVIDIADriver $name to replace it"
    if [[ "$(uid_of "$name" || true)" == "$old_uid" ]]; then
      # Still there, as read (or being deleted, held by a finalizer): nothing to restore, it says so.
      changed=false
      reasons[i]+=" (it is still there, uid $old_uid)"
    fi
    return 1
  fi
  if ! create_from "$(stage_var "$n" APPLY)"; then
    reasons[i]="the API server refused the replacement of NVIDIADriver $name"
    return 1
  fi
  applied_uid="$(uid_of "$name" || true)"
  echo "Stage $n: NVIDIADriver $name replaced (new uid $applied_uid); its driver pods restart."
}

# name|owning NVIDIADriver UID per DaemonSet; name|DaemonSet|node|image|ready|imageID|waiting reason per pod.
DS_COLUMNS='{range .items[*]}{.metadata.name}{"|"}{.metadata.ownerReferences[?(@.kind=="NVIDIADriver")].uid}{"\n"}{end}'
POD_COLUMNS='{range .items[*]}{.metadata.name}{"|"}'
POD_COLUMNS+='{.metadata.ownerReferences[?(@.kind=="DaemonSet")].name}{"|"}{.spec.nodeName}{"|"}'
POD_COLUMNS+='{.spec.containers[?(@.name=="nvidia-driver-ctr")].image}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[?(@.name=="nvidia-driver-ctr")].ready}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[?(@.name=="nvidia-driver-ctr")].imageID}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[?(@.name=="nvidia-driver-ctr")].state.waiting.reason}{"\n"}{end}'

# node_status OWNED IMAGE DIGEST DAEMONSET NODE: "ok", or why not, for one node of a pool ($pods is the table).
node_status() {
  local owned="$1" want_image="$2" want_digest="$3" want_ds="$4" want_node="$5"
  local pod ds node image ready image_id waiting seen=""
  while IFS='|' read -r pod ds node image ready image_id waiting; do
    [[ -n "$pod" && "$node" == "$want_node" && " $owned " == *" $ds "* ]] || continue
    [[ "$want_ds" == "-" || "$ds" == "$want_ds" ]] || continue
    if [[ "$image" == "$want_image" && "$ready" == "true" && "$image_id" == *"$want_digest" ]]; then
      echo ok
      return 0
    fi
    if [[ "$image" != "$want_image" ]]; then
      seen="pod $pod runs $image"
    elif [[ "$ready" != "true" ]]; then
      seen="pod $pod not ready${waiting:+ ($waiting)}"
    else
      seen="pod $pod has imageID '$image_id', not digest $want_digest"
    fi
  done <<<"$pods"
  echo "${seen:-no driver pod of this NVIDIADriver on $want_node yet}"
}

# verify_stage I: waits until the stage's pools run the pushed image and the CR is ready; sets reasons[I].
verify_stage() {
  local i="$1" n=$(($1 + 1)) name="${names[$1]}" deadline poll=0 line uid state owned dsname owner
  local image digest ds nodes node status all_ok waiting_on now node_list
  deadline=$(($(date +%s) + TIMEOUT_SECONDS))
  while true; do
    poll=$((poll + 1))
    line="$(kubectl get nvidiadriver "$name" -o jsonpath='{.metadata.uid}{"|"}{.status.state}' || echo "|unreadable")"
    uid="${line%%|*}"
    state="${line#*|}"
    [[ "$state" =~ ^[A-Za-z]+$ ]] || state="unknown"
    if [[ -n "$applied_uid" && -n "$uid" && "$uid" != "$applied_uid" ]]; then
      reasons[i]="NVIDIADriver $name was replaced by someone else during verification (uid $uid)"
      return 1
    fi
    owned=""
    while IFS='|' read -r dsname owner; do
      [[ -n "$dsname" && -n "$owner" && "$owner" == "$applied_uid" ]] && owned+=" $dsname"
    done <<<"$(kubectl get daemonsets -n "$OPERATOR_NAMESPACE" -o jsonpath="$DS_COLUMNS" || true)"
    if ! pods="$(kubectl get pods -n "$OPERATOR_NAMESPACE" -l app.kubernetes.io/component=nvidia-driver \
      -o jsonpath="$POD_COLUMNS")"; then
      echo "poll $poll: WARNING: could not list driver pods in namespace $OPERATOR_NAMESPACE; retrying." >&2
      pods=""
    fi
    all_ok=true
    waiting_on=""
    while read -r image digest ds nodes; do
      [[ -n "${image:-}" ]] || continue
      IFS=',' read -ra node_list <<<"$nodes"
      for node in "${node_list[@]}"; do
        status="$(node_status "$owned" "$image" "$digest" "$ds" "$node")"
        if [[ "$status" != "ok" ]]; then
          all_ok=false
          waiting_on+="${waiting_on:+; }$node: $status"
        fi
      done
    done <<<"$(stage_var "$n" EXPECTED)"
    echo "poll $poll: stage $n NVIDIADriver $name status.state=$state; DaemonSets:${owned:- none yet}; ${waiting_on:-every node runs its image, Ready on the pushed digest}"
    if [[ "$all_ok" == "true" && "$state" == "ready" ]]; then
      reasons[i]="every node of its pools runs the pushed image, Ready; status.state ready"
      return 0
    fi
    now=$(date +%s)
    if ((now >= deadline)); then
      reasons[i]="not verified within ${TIMEOUT_SECONDS}s: status.state $state; ${waiting_on:-the driver pods are Ready}"
      return 1
    fi
    sleep "$(((deadline - now) < POLL_SECONDS ? (deadline - now) : POLL_SECONDS))"
  done
}

# The line that says how a workload went, from its log on stdin (as check_gpu_workload.sh reads it): the last
# line naming a verdict (vectorAdd prints "Test PASSED"), else the last line; one line, at most 200 characters.
output_line() {
  local lines verdict
  lines="$(tr -d '\000-\011\013-\037' | grep -v '^[[:space:]]*$' || true)"
  verdict="$(grep -E 'PASSED|FAILED' <<<"$lines" | tail -n 1 || true)"
  [[ -n "$verdict" ]] || verdict="$(tail -n 1 <<<"$lines")"
  printf '%s' "${verdict:0:200}"
}

# check_stage I: the stage's GPU workload checks (STAGE_<n>_CHECKS), one pod per pool, all at once; appends
# what each printed to reasons[I], or sets why one failed and returns 1. Failed pods are kept for logs.
check_stage() {
  local i="$1" n=$(($1 + 1)) checks kernel manifest name k row phase node deadline now busy log line
  local failed="" passed=""
  local -a kernels=() pods=() states=() where=()
  checks="$(stage_var "$n" CHECKS)"
  [[ -n "$checks" ]] || return 0
  while read -r kernel manifest; do
    [[ -n "${kernel:-}" ]] || continue
    printf '%s\n' "$manifest" >"$work/check.json"
    # The pipeline's own manifest (generateName: a pod of its own per run); the API server validates it.
    if ! name="$(kubectl_retry create -n "$NAMESPACE" --validate=false -f "$work/check.json" \
      -o jsonpath='{.metadata.name}')" || [[ -z "$name" ]]; then
      failed+="${failed:+; }kernel $kernel: the check pod could not be created in namespace $NAMESPACE"
      continue
    fi
    echo "Stage $n: GPU check pod $name for kernel $kernel"
    kernels+=("$kernel")
    pods+=("$name")
    states+=("pending")
    where+=("-")
  done <<<"$checks"
  deadline=$(($(date +%s) + CHECK_TIMEOUT_SECONDS))
  while ((${#pods[@]} > 0)); do
    busy=0
    for k in "${!pods[@]}"; do
      [[ "${states[$k]}" == "pending" ]] || continue
      if ! row="$(kubectl get pod "${pods[$k]}" -n "$NAMESPACE" -o jsonpath='{.status.phase}{"|"}{.spec.nodeName}')"; then
        busy=$((busy + 1))
        continue
      fi
      IFS='|' read -r phase node <<<"$row"
      [[ -z "${node:-}" ]] || where[k]="$node"
      case "${phase:-}" in
        Succeeded) states[k]="ok" ;;
        Failed) states[k]="failed" ;;
        *) busy=$((busy + 1)) ;;
      esac
    done
    ((busy > 0)) || break
    now=$(date +%s)
    ((now < deadline)) || break
    sleep "$(((deadline - now) < POLL_SECONDS ? (deadline - now) : POLL_SECONDS))"
  done
  for k in "${!pods[@]}"; do
    if [[ "${states[$k]}" == "pending" ]]; then
      failed+="${failed:+; }kernel ${kernels[$k]} (pod ${pods[$k]}): not done within ${CHECK_TIMEOUT_SECONDS}s"
      kubectl delete pod "${pods[$k]}" -n "$NAMESPACE" --ignore-not-found --wait=false >/dev/null || true
      continue
    fi
    log="$(kubectl logs "${pods[$k]}" -n "$NAMESPACE" -c gpu-check --tail=200 2>&1 || true)"
    line="$(output_line <<<"$log")"
    echo "Stage $n: GPU check of kernel ${kernels[$k]} on ${where[$k]}: ${states[$k]}: ${line:-(no output)}"
    if [[ "${states[$k]}" == "ok" ]]; then
      passed+="${passed:+; }${kernels[$k]} on ${where[$k]}: ${line:-(no output)}"
      kubectl delete pod "${pods[$k]}" -n "$NAMESPACE" --ignore-not-found --wait=false >/dev/null || true
    else
      failed+="${failed:+; }kernel ${kernels[$k]} on ${where[$k]} (pod ${pods[$k]}, kept): ${line:-(no output)}"
    fi
  done
  if [[ -n "$failed" ]]; then
    reasons[i]="GPU workload check failed: $failed"
    return 1
  fi
  reasons[i]+="; GPU workload check passed: $passed"
}

# restore_stage I: puts the stage's NVIDIADriver back exactly as it was read; returns 1 when it cannot.
restore_stage() {
  local i="$1" n=$(($1 + 1)) name="${names[$1]}" file="$work/current.json" uid
  if [[ "${actions[$i]}" == "patch" ]]; then
    printf 'Stage %s: restoring NVIDIADriver %s with:\n%s\n' "$n" "$name" "$(stage_var "$n" UNDO)"
    if kubectl_retry patch nvidiadriver "$name" --type=json -p "$(stage_var "$n" UNDO)"; then
      return 0
    fi
    # An attempt reported as failed may have been applied: then the spec is the one read again.
    read_driver "$name" "$file" && passes "$file" "$(stage_var "$n" GUARD)"
    return
  fi
  uid="$(uid_of "$name" || true)"
  if [[ -n "$uid" ]]; then
    if [[ "$uid" != "$applied_uid" ]]; then
      echo "NVIDIADriver $name (uid $uid) is not the pipeline's replacement (uid ${applied_uid:-none}): left alone." >&2
      return 1
    fi
    if ! delete_exactly "$name" "$uid" || ! wait_gone "$name" "$uid"; then
      return 1
    fi
  fi
  printf 'Stage %s: recreating the original NVIDIADriver %s:\n%s\n' "$n" "$name" "$(stage_var "$n" UNDO)"
  create_from "$(stage_var "$n" UNDO)"
}

for i in "${!names[@]}"; do
  n=$((i + 1))
  role="stage $n"
  ((n == 1)) && role="canary (stage 1)"
  echo "=== $role of ${#names[@]}: ${actions[$i]} NVIDIADriver ${names[$i]}"
  if apply_stage "$i" && verify_stage "$i" && check_stage "$i"; then
    outcomes[i]="verified"
    echo "Stage $n verified: ${reasons[$i]}."
    continue
  fi
  failure="${reasons[$i]}"
  if [[ "$changed" != "true" ]]; then
    outcomes[i]="not_applied"
  elif restore_stage "$i"; then
    outcomes[i]="restored"
    reasons[i]="$failure; restored as it was read"
  else
    outcomes[i]="restore_failed"
    reasons[i]="$failure; RESTORE FAILED: check NVIDIADriver ${names[$i]} by hand (its original is in this log)"
  fi
  write_verdict false
  kept=""
  ((i > 0)) && kept=" Stages already verified stay on the new driver: ${names[*]:0:i}."
  echo "ERROR: stage $n (NVIDIADriver ${names[$i]}, ${actions[$i]}) failed: ${reasons[$i]}; later stages not started.$kept" >&2
  exit 1
done

write_verdict true
echo "Every stage verified: ${names[*]} run the pushed precompiled driver."
