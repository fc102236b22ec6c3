#!/usr/bin/env bash
# Run a CUDA workload on one GPU of every kernel the rollout changed: one check pod per kernel, as NVIDIA's
# operator validator runs its vectorAdd pod (gpu-operator cmd/nvidia-validator main.go runWorkload: create
# the pod, wait until it Succeeded). The pods are built by the pipeline (steps/check_gpu_workload.py); this
# script only creates them, waits, and reads what each printed.
#
# A kernel passes when its pod Succeeded. It fails when the pod Failed (the workload's own error, e.g.
# vectorAdd's "Failed to allocate device vector A (error code ...)!") or is not done within TIMEOUT_SECONDS
# (no GPU allocatable on any node of that kernel leaves it Pending: the device plugin advertises
# nvidia.com/gpu only once the node's driver is ready). Any failure exits 1: the pipeline then rolls back.
#
# Env:  NAMESPACE        where the check pods run (the pipeline's namespace)
#       CHECKS           lines <kernel> <check pod JSON>, one per kernel (as the nodes report it)
#       CHECK_IMAGE      the workload image (for the messages only; each pod names its own)
#       TIMEOUT_SECONDS  give up after this long, image pulls included (default 600)
#       POLL_SECONDS     wait between polls (default 5)
# Result: {"checked": true|false, "image": "...", "kernels": {"<kernel>": {"status": "ok|failed|timeout",
#          "node": "...", "pod": "...", "output": "<the line that says how it went>"}}}
# Succeeded pods and pods that never finished are deleted; failed ones are kept for `kubectl logs`.
# Runs after lib.sh (prepended in the pod): write_result, kubectl_retry and their env.
set -euo pipefail

: "${NAMESPACE:?NAMESPACE must name the namespace the check pods run in}"
: "${CHECKS:?CHECKS must list one line per kernel: <kernel> <check pod JSON>}"
CHECK_IMAGE="${CHECK_IMAGE:-the check image}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"

die() {
  echo "ERROR: $*" >&2
  exit 2
}

[[ "$TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || die "TIMEOUT_SECONDS must be a whole number, got '$TIMEOUT_SECONDS'."
[[ "$POLL_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "POLL_SECONDS must be a positive whole number, got '$POLL_SECONDS'."

kernels=()   # kernel names, in CHECKS order
manifests=() # the check pod of each
while read -r kernel manifest; do
  [[ -z "${kernel:-}" ]] && continue
  # Values end up in the JSON result and in messages: only the characters these names can hold.
  [[ "$kernel" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "CHECKS kernel '$kernel' is not a kernel release."
  [[ "${manifest:-}" == "{"*"}" ]] || die "CHECKS line for kernel $kernel needs a check pod as JSON after the name."
  kernels+=("$kernel")
  manifests+=("$manifest")
done <<<"$CHECKS"
((${#kernels[@]} > 0)) || die "CHECKS lists no kernel."

# Escape a value for a JSON string (control characters were removed before).
json_str() {
  local s="${1//\\/\\\\}"
  printf '"%s"' "${s//\"/\\\"}"
}

# The line that says how a workload went, from its log on stdin: the last line naming a verdict (vectorAdd
# prints "Test PASSED" then "Done"), else the last line (an error, or nvidia-smi -L's last GPU). One line,
# no control characters, at most 200 characters.
output_line() {
  local lines verdict
  lines="$(tr -d '\000-\011\013-\037' | grep -v '^[[:space:]]*$' || true)"
  verdict="$(grep -E 'PASSED|FAILED' <<<"$lines" | tail -n 1 || true)"
  [[ -n "$verdict" ]] || verdict="$(tail -n 1 <<<"$lines")"
  printf '%s' "${verdict:0:200}"
}

# Per kernel, indexed like kernels[]: pod name, status (pending|ok|failed|timeout), node, output line.
pods=()
status=()
nodes=()
outputs=()
scratch="$(mktemp -d)"
for i in "${!kernels[@]}"; do
  printf '%s\n' "${manifests[$i]}" >"$scratch/check-$i.json"
  nodes[i]="-"
  # generateName: every run (and a retried create) gets its own pod. The manifest is the pipeline's own
  # (unit-tested), so no client-side schema check, as record_readiness.sh creates its ConfigMap.
  if name="$(kubectl_retry create -n "$NAMESPACE" --validate=false -f "$scratch/check-$i.json" \
    -o jsonpath='{.metadata.name}')" &&
    [[ -n "$name" ]]; then
    pods[i]="$name"
    status[i]="pending"
    outputs[i]="-"
    echo "kernel ${kernels[$i]}: created check pod $name (image $CHECK_IMAGE)"
  else
    pods[i]="-"
    status[i]="failed"
    outputs[i]="the check pod could not be created in namespace $NAMESPACE (its error is printed above)"
  fi
done
rm -rf "$scratch"

# phase|node|pod reason|scheduler's message|container waiting reason
POD_COLUMNS='{.status.phase}{"|"}{.spec.nodeName}{"|"}{.status.reason}{"|"}'
POD_COLUMNS+='{.status.conditions[?(@.type=="PodScheduled")].message}{"|"}'
POD_COLUMNS+='{.status.containerStatuses[0].state.waiting.reason}'

deadline=$(($(date +%s) + TIMEOUT_SECONDS))
waits=() # why each unfinished pod is not done yet (for the timeout message)
poll=0
while true; do
  poll=$((poll + 1))
  busy=0
  for i in "${!kernels[@]}"; do
    [[ "${status[$i]}" == "pending" ]] || continue
    if ! row="$(kubectl get pod "${pods[$i]}" -n "$NAMESPACE" -o jsonpath="$POD_COLUMNS")"; then
      echo "poll $poll: WARNING: could not read pod ${pods[$i]}; retrying." >&2
      busy=$((busy + 1))
      continue
    fi
    IFS='|' read -r phase node reason message waiting <<<"$row"
    [[ -z "${node:-}" ]] || nodes[i]="$node"
    case "${phase:-}" in
      Succeeded) status[i]="ok" ;;
      Failed) status[i]="failed" ;;
      *)
        busy=$((busy + 1))
        waits[i]="${phase:-Pending}${waiting:+ ($waiting)}${reason:+ ($reason)}${message:+: $message}"
        ;;
    esac
    echo "poll $poll: kernel ${kernels[$i]}: pod ${pods[$i]} on ${nodes[$i]}: ${phase:-Pending} ${status[$i]}"
  done
  ((busy > 0)) || break
  now=$(date +%s)
  ((now < deadline)) || break
  sleep "$(((deadline - now) < POLL_SECONDS ? (deadline - now) : POLL_SECONDS))"
done

for i in "${!kernels[@]}"; do
  name="${pods[$i]}"
  [[ "$name" != "-" ]] || continue
  if [[ "${status[$i]}" == "pending" ]]; then
    status[i]="timeout"
    outputs[i]="not done within ${TIMEOUT_SECONDS}s: ${waits[$i]:-Pending}"
    kubectl delete pod "$name" -n "$NAMESPACE" --ignore-not-found --wait=false >/dev/null ||
      echo "WARNING: could not delete the unfinished check pod $name; delete it by hand." >&2
    continue
  fi
  log="$(kubectl logs "$name" -n "$NAMESPACE" -c gpu-check --tail=200 2>&1 || true)"
  echo "--- kernel ${kernels[$i]}, pod $name on ${nodes[$i]}:"
  printf '%s\n' "$log" | sed 's/^/    /'
  outputs[i]="$(output_line <<<"$log")"
  [[ -n "${outputs[$i]}" ]] || outputs[i]="(no output)"
  if [[ "${status[$i]}" == "ok" ]]; then
    kubectl delete pod "$name" -n "$NAMESPACE" --ignore-not-found --wait=false >/dev/null ||
      echo "WARNING: could not delete the finished check pod $name." >&2
  fi
done

all_ok=true
body=""
sep=""
failed=""
for i in "${!kernels[@]}"; do
  [[ "${status[$i]}" == "ok" ]] || {
    all_ok=false
    failed+="${failed:+; }kernel ${kernels[$i]} (node ${nodes[$i]}, pod ${pods[$i]}): ${status[$i]}: ${outputs[$i]}"
  }
  body+="$(printf '%s"%s": {"status": "%s", "node": %s, "pod": %s, "output": %s}' "$sep" "${kernels[$i]}" \
    "${status[$i]}" "$(json_str "${nodes[$i]}")" "$(json_str "${pods[$i]}")" "$(json_str "${outputs[$i]}")")"
  sep=", "
done
write_result '{"checked": %s, "image": %s, "kernels": {%s}}' "$all_ok" "$(json_str "$CHECK_IMAGE")" "$body"

printf '%-36s %-8s %-30s %s\n' KERNEL STATUS NODE OUTPUT
for i in "${!kernels[@]}"; do
  printf '%-36s %-8s %-30s %s\n' "${kernels[$i]}" "${status[$i]}" "${nodes[$i]}" "${outputs[$i]}"
done
if [[ "$all_ok" == "true" ]]; then
  echo "Checked: a CUDA workload ran on one GPU of every kernel."
  exit 0
fi
echo "Failed check pods are kept: kubectl get pods -n $NAMESPACE -l precompiled-drivers/gpu-check-kernel" >&2
echo "ERROR: GPU workload check failed on $failed" >&2
exit 1
