#!/usr/bin/env bash
# Real-GPU checks of the node agent (gpufrac node). Run from anywhere on a machine with an NVIDIA
# GPU, CUDA (nvcc), cmake, ninja and PyTorch; needs no network and installs nothing.
#
#   tests/gpu/node_checks.sh [REPORT.md]      (default: docs/results/gpu-node.md)
#
# Builds gpufrac into build-gpu/ (or uses GPUFRAC_GPU_PREBUILT=DIR), measures the context
# footprint as runtime_checks.sh does, starts `gpufrac node` on a private socket and state file in
# a temp directory, and checks, on GPU 0: the agent discovers the real GPU through NVML; it places
# two PyTorch tenants at 0.5; /metrics reports their real memory (the interposer's charge, and
# NVML's per-process figure, compared with nvidia-smi's); a SIGKILLed tenant is reclaimed; a
# process started outside gpufrac that allocates on the GPU is flagged by the NVML backstop, and
# so is a tenant whose command cleared LD_PRELOAD and went above its limit. The backstop runs in
# warn mode: the script kills nothing it did not start. Exits 1 if any check fails; the report is
# written regardless. See tests/gpu/README.md.
#
# Knobs (environment): GPUFRAC_NODE_TENSOR_MIB (2048: what each PyTorch tenant allocates),
# GPUFRAC_NODE_RECLAIM_MS (1000: the reclaim promise checked), PYTHON (python3).
#
# shellcheck disable=SC2119  # lib.sh functions called without their optional arguments
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
REPORT=${1:-docs/results/gpu-node.md}
BUILD=${GPUFRAC_GPU_PREBUILT:-build-gpu}
PYTHON=${PYTHON:-python3}
TENSOR_MIB=${GPUFRAC_NODE_TENSOR_MIB:-2048}
RECLAIM_MS=${GPUFRAC_NODE_RECLAIM_MS:-1000}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/tests/gpu/lib.sh"
report_init node_checks gpufrac-node-checks "gpufrac node on a real GPU"

# Everything this script starts, stopped whichever way it ends (before the report is written).
AGENT_PID=""
STARTED_PIDS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
node_cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    # Only real pids: kill 0 or -1 would reach this script's own group or everything.
    [[ $pid =~ ^[0-9]+$ ]] && ((pid > 1)) && kill -KILL "$pid" 2>/dev/null
  done
  if [[ -n $AGENT_PID ]]; then
    # The agent leaves its tenants running by design; the ones it started are killed above or
    # deleted below, so stop it only after asking it to delete what is left.
    api_delete_all 2>/dev/null
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
  fi
  [[ -s $WORK/agent.log ]] && attach "agent log (logfmt events)" "$WORK/agent.log"
}
# shellcheck disable=SC2317
on_exit() {
  local status=$?
  node_cleanup
  (exit "$status")
  finish
}
trap on_exit EXIT

# --- environment -------------------------------------------------------------------------------

clean_env
probe_versions uuid
set_header
require_gpu
GPU_UUID=$(cut -d, -f5 <<<"$GPU_LINE" | tr -d ' ')
CARD_BYTES=$((CARD_MIB * MIB))

# --- build and context footprint ---------------------------------------------------------------

build_gpufrac
ctx_prog=""
if nvcc_compile alloc_apis; then
  ctx_prog=$GPU_BIN/alloc_apis
else
  attach "nvcc alloc_apis.cu" "$WORK/nvcc-alloc_apis.log"
fi
# Exported as GPUFRAC_CONTEXT_BYTES: the agent passes its environment to its tenants.
measure_context "$ctx_prog" "could not measure it; charging the default 512 MiB" ||
  attach "alloc_apis context" "$WORK/ctx.out"

ALL_CHECKS=("agent discovers the GPU" "two PyTorch tenants at 0.5" "third tenant refused"
  "tenant memory in /metrics" "compute busy of the GPU" "SIGKILLed tenant reclaimed" "process outside gpufrac flagged"
  "tenant that bypassed the interposer flagged")
if ((!BUILT)); then
  for c in "${ALL_CHECKS[@]}"; do check "$c" FAIL "not run: gpufrac was not built"; done
  exit 1
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  for c in "${ALL_CHECKS[@]}"; do check "$c" FAIL "not run: '$PYTHON -c \"import torch\"' failed"; done
  exit 1
fi

# --- helpers -----------------------------------------------------------------------------------

# A PyTorch tenant: allocates MIB of tensors, touches them, writes a ready file with its pid and
# torch's figures, then holds them until killed; with "spin", it also keeps the GPU busy with
# 4096x4096 fp16 matmuls meanwhile.
cat >"$WORK/hold.py" <<'EOF'
import json, os, sys, time
import torch
mib, ready = int(sys.argv[1]), sys.argv[2]
spin = len(sys.argv) > 3 and sys.argv[3] == "spin"
x = torch.empty(mib << 20, dtype=torch.uint8, device="cuda")
x.fill_(1)
if spin:
    a = torch.randn(4096, 4096, dtype=torch.float16, device="cuda")
    b = torch.randn(4096, 4096, dtype=torch.float16, device="cuda")
    y = a @ b
torch.cuda.synchronize()
with open(ready + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "allocated": torch.cuda.memory_allocated(),
               "reserved": torch.cuda.memory_reserved()}, f)
os.rename(ready + ".tmp", ready)
while spin:
    for _ in range(10):
        y = a @ b
    torch.cuda.synchronize()
while True:
    time.sleep(60)
EOF

# HTTP over the agent's unix socket, without curl: api METHOD PATH [BODY] prints the status line
# "STATUS" then the body.
cat >"$WORK/api.py" <<'EOF'
import http.client, socket, sys
class Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
c = Conn(sys.argv[1])
body = sys.argv[4] if len(sys.argv) > 4 else None
c.request(sys.argv[2], sys.argv[3], body=body,
          headers={"Content-Type": "application/json"} if body else {})
r = c.getresponse()
print(r.status)
sys.stdout.write(r.read().decode())
EOF
SOCK=$WORK/node.sock
api() { "$PYTHON" "$WORK/api.py" "$SOCK" "$@"; }
# jq-like field access on the body of an api answer: field FILE EXPR (EXPR in Python on `j`).
field() {
  "$PYTHON" -c 'import json,sys; j=json.loads(open(sys.argv[1]).read().split("\n",1)[1]); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
status_of() { head -n1 "$1"; }
# shellcheck disable=SC2317  # used by node_cleanup
api_delete_all() {
  api GET /v1/tenants >"$WORK/left.json" || return
  local id
  for id in $(field "$WORK/left.json" '" ".join(t["id"] for t in j["tenants"])'); do
    api DELETE "/v1/tenants/$id?grace=2s" >/dev/null
  done
}
# A metric's value from /metrics: metric NAME LABELS (the exact label text inside the braces).
metric() { api GET /metrics | awk -v k="$1{$2}" '$1 == k { print $2 }'; }
now_ms() { date +%s%3N; }
# wait_for SECONDS COMMAND...: polls every 0.1 s until COMMAND succeeds.
wait_for() {
  local end=$(($(date +%s) + $1))
  shift
  until "$@"; do
    (($(date +%s) >= end)) && return 1
    sleep 0.1
  done
}
smi_used_mib() {  # nvidia-smi's per-process memory for PID, in MiB (empty if not listed)
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
    awk -F', *' -v p="$1" '$1 == p { print $2 }'
}

# --- the agent ---------------------------------------------------------------------------------

cat >"$WORK/node.yaml" <<EOF
socket: $SOCK
state: $WORK/node.db
interposer: $REPO/$BUILD/lib/libgpufrac.so
reap_interval: 100ms
grace_period: 3s
backstop:
  mode: warn
  interval: 500ms
EOF
[[ $BUILD == /* ]] && sed -i "s|^interposer: .*|interposer: $BUILD/lib/libgpufrac.so|" "$WORK/node.yaml"
"$GPUFRAC" node --config "$WORK/node.yaml" 2>"$WORK/agent.log" &
AGENT_PID=$!
if ! wait_for 30 api GET /v1/health >/dev/null 2>&1; then
  check "agent discovers the GPU" FAIL "gpufrac node did not answer on $SOCK within 30 s"
  exit 1
fi

# 1. Discovery through NVML: the agent's GPU 0 is nvidia-smi's GPU 0.
api GET /v1/gpus >"$WORK/gpus.json"
a_uuid=$(field "$WORK/gpus.json" 'j["gpus"][0]["uuid"]')
a_name=$(field "$WORK/gpus.json" 'j["gpus"][0]["name"]')
a_total=$(field "$WORK/gpus.json" 'j["gpus"][0]["memory"]["total"]')
a_count=$(field "$WORK/gpus.json" 'len(j["gpus"])')
a_sms=$(field "$WORK/gpus.json" 'j["gpus"][0]["sm_count"]')
a_health=$(field "$WORK/gpus.json" 'j["gpus"][0]["health"]')
verdict=FAIL
[[ $a_uuid == "$GPU_UUID" && $a_name == "$GPU_NAME" && $a_health == ok && $a_sms =~ ^[0-9]+$ ]] &&
  within 0.1 "${a_total:-0}" "$CARD_BYTES" && verdict=PASS
check "agent discovers the GPU" $verdict "agent: $a_count GPU(s); GPU 0 $a_name $a_uuid, $(mib "${a_total:-0}"), $a_sms SMs (CUDA driver), health $a_health; nvidia-smi: $GPU_NAME $GPU_UUID, $CARD_MIB MiB"
note "GET /v1/gpus after start: \`$(tail -n +2 "$WORK/gpus.json" | tr -d '\n')\`"
CARD_TOTAL=${a_total:-$CARD_BYTES}  # NVML's exact total, which fractions are resolved against

# 2. Two PyTorch tenants at 0.5 on GPU 0, then a third that no longer fits.
# Tenant b also keeps the GPU busy (for the compute-busy check).
for t in a b; do
  spin=""
  [[ $t == b ]] && spin=', "spin"'
  api POST /v1/tenants "{\"name\": \"torch-$t\", \"memory\": \"0.5\", \"gpu\": 0, \"command\": [\"$PYTHON\", \"$WORK/hold.py\", \"$TENSOR_MIB\", \"$WORK/ready-$t\"$spin]}" >"$WORK/create-$t.json"
done
placed=0
for t in a b; do
  [[ $(status_of "$WORK/create-$t.json") == 201 && $(field "$WORK/create-$t.json" 'j["gpu"]') == 0 ]] &&
    placed=$((placed + 1))
done
ready=0
wait_for 120 test -s "$WORK/ready-a" -a -s "$WORK/ready-b" && ready=1
PID_A=$(field "$WORK/create-a.json" 'j["pid"]')
PID_B=$(field "$WORK/create-b.json" 'j["pid"]')
STARTED_PIDS+=("${PID_A:-0}" "${PID_B:-0}")
req_a=$(field "$WORK/create-a.json" 'j["memory"]["request"]')
verdict=FAIL
((placed == 2 && ready == 1)) && within 0.01 "${req_a:-0}" "$(calc "$CARD_TOTAL / 2")" && verdict=PASS
check "two PyTorch tenants at 0.5" $verdict "created on GPU 0: $placed/2; request $(mib "${req_a:-0}") each (half of $(mib "$CARD_TOTAL")); both allocated $TENSOR_MIB MiB: $([[ $ready == 1 ]] && echo yes || echo no) (pids $PID_A, $PID_B)"
((placed == 2)) || attach "create answers" "$WORK/create-a.json"

api POST /v1/tenants "{\"name\": \"third\", \"memory\": \"0.1\", \"gpu\": 0, \"command\": [\"true\"]}" >"$WORK/create-c.json"
c_status=$(status_of "$WORK/create-c.json")
c_msg=$(field "$WORK/create-c.json" 'j["error"]["message"]')
verdict=FAIL
[[ $c_status == 409 && $c_msg == *"does not fit"* ]] && verdict=PASS
check "third tenant refused" $verdict "POST 0.1 on GPU 0 while two halves are placed: $c_status \"$c_msg\""

# 3. Their memory in /metrics: what the interposer charged (>= the tensors + the context) and
#    NVML's per-process figure, which must equal nvidia-smi's for the same pid.
sleep 1.5  # at least two backstop samples after both tenants allocated
api GET /metrics >"$WORK/metrics.txt"
rows=()
verdict=PASS
for t in a b; do
  pid_var=PID_${t^^}
  used=$(awk -v k="gpufrac_tenant_memory_used_bytes{tenant=\"torch-$t\",gpu=\"0\"}" '$1 == k { print $2 }' "$WORK/metrics.txt" | tail -n1)
  nvml=$(awk -v k="gpufrac_tenant_memory_nvml_bytes{tenant=\"torch-$t\",gpu=\"0\"}" '$1 == k { print $2 }' "$WORK/metrics.txt" | tail -n1)
  smi=$(smi_used_mib "${!pid_var}")
  rows+=("torch-$t: charged $(mib "${used:-0}"), NVML $(mib "${nvml:-0}"), nvidia-smi ${smi:-?} MiB")
  low=$(calc "$TENSOR_MIB * $MIB + $CTX_BYTES")
  le "$low" "${used:-0}" || verdict=FAIL
  le "${used:-0}" "$(calc "$CARD_TOTAL / 2")" || verdict=FAIL
  # nvidia-smi rounds to MiB; allow 2 MiB and 1% for memory torch touches between the readings.
  [[ -n $smi ]] && within 1 "${nvml:-0}" "$(calc "$smi * $MIB")" ||
    awk -v a="${nvml:-0}" -v b="$(calc "${smi:-0} * $MIB")" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 2 * 1048576) }' ||
    verdict=FAIL
done
check "tenant memory in /metrics" $verdict "$(IFS=';'; echo "${rows[*]}"); charged >= $TENSOR_MIB MiB + context $CTX_MIB MiB and <= the request; NVML = nvidia-smi (+-1% or 2 MiB)"
[[ $verdict == PASS ]] || attach "/metrics" "$WORK/metrics.txt"
note "Per-tenant series from /metrics with both tenants holding $TENSOR_MIB MiB:"
note ""
note '```'
grep -E '^gpufrac_(tenant_memory|gpu_memory)' "$WORK/metrics.txt" >>"$NOTES"
note '```'

# 3b. Compute busy: tenant b's matmul loop keeps GPU 0 busy; the agent's figure (NVML
#     utilization, in /v1/gpus and /metrics) must show it and agree with nvidia-smi's.
pairs=()
verdict=FAIL
for _ in 1 2 3; do
  sleep 1
  api GET /v1/gpus >"$WORK/gpus-busy.json"
  busy=$(field "$WORK/gpus-busy.json" 'j["gpus"][0]["compute"]["busy"]')
  smi=$(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -i 0 2>/dev/null | tr -d ' ')
  pairs+=("agent ${busy:-?} / nvidia-smi ${smi:-?}%")
  if [[ $busy =~ ^[0-9.]+$ && $smi =~ ^[0-9]+$ ]] && le 0.5 "$busy" &&
    awk -v a="$busy" -v b="$smi" 'BEGIN { d = a * 100 - b; if (d < 0) d = -d; exit !(d <= 25) }'; then
    verdict=PASS
  fi
done
busy_metric=$(metric gpufrac_gpu_compute_busy_ratio "gpu=\"0\",uuid=\"$a_uuid\"")
[[ -n $busy_metric ]] || verdict=FAIL
check "compute busy of the GPU" $verdict "three readings 1 s apart while torch-b runs 4096x4096 fp16 matmuls: $(IFS=';'; echo "${pairs[*]}"); gpufrac_gpu_compute_busy_ratio ${busy_metric:-absent}; passes when one reading is >= 0.5 and within 25 points of nvidia-smi's utilization.gpu (their sample periods differ)"

# 4. SIGKILL tenant A: reclaimed (state exited, its request released) within the promise.
api GET /v1/gpus >"$WORK/gpus-before.json"
committed_before=$(field "$WORK/gpus-before.json" 'j["gpus"][0]["memory"]["committed"]')
t0=$(now_ms)
[[ $PID_A =~ ^[0-9]+$ ]] && ((PID_A > 1)) && kill -KILL "$PID_A"
tenant_exited() {
  api GET /v1/tenants/torch-a >"$WORK/a.json" && [[ $(field "$WORK/a.json" 'j["state"]') == exited ]]
}
reclaimed=0
wait_for 10 tenant_exited && reclaimed=1
# The agent's own record of when it reclaimed (finished_ms, wall clock), so the figure does not
# include this script's polling.
finished=$(field "$WORK/a.json" 'j.get("finished_ms", 0)')
took=$((${finished:-0} - t0))
api GET /v1/gpus >"$WORK/gpus-after.json"
committed_after=$(field "$WORK/gpus-after.json" 'j["gpus"][0]["memory"]["committed"]')
reason=$(field "$WORK/a.json" 'j["reason"]')
gone=0
wait_for 10 test -z "$(smi_used_mib "$PID_A")" && gone=1
verdict=FAIL
((reclaimed && took >= 0 && took <= RECLAIM_MS)) && [[ $reason == "killed by signal 9" ]] &&
  le "${committed_after:-0}" "$(calc "${committed_before:-0} - ${req_a:-0}")" && verdict=PASS
check "SIGKILLed tenant reclaimed" $verdict "reclaimed $took ms after the SIGKILL (the record's finished_ms; promise $RECLAIM_MS ms); reason \"$reason\"; committed $(mib "${committed_before:-0}") -> $(mib "${committed_after:-0}"); gone from nvidia-smi: $([[ $gone == 1 ]] && echo yes || echo no)"

# 5. A process started outside gpufrac that allocates on the GPU: flagged (no tenant).
"$PYTHON" "$WORK/hold.py" 1024 "$WORK/ready-stranger" >"$WORK/stranger.out" 2>&1 &
STRANGER=$!
STARTED_PIDS+=("$STRANGER")
offender() {  # offender PID REASON: the backstop lists PID with REASON
  api GET /v1/backstop >"$WORK/backstop.json" &&
    [[ $(field "$WORK/backstop.json" "any(o['pid'] == $1 and o['reason'] == '$2' for o in j['offenders'])") == True ]]
}
t0=$(now_ms)
flagged=0
wait_for 60 test -s "$WORK/ready-stranger" && t0=$(now_ms) && wait_for 10 offender "$STRANGER" no_tenant && flagged=1
took=$(($(now_ms) - t0))
logged=0
grep -q "event=backstop.flagged pid=$STRANGER gpu=0 tenant=none reason=no_tenant" "$WORK/agent.log" && logged=1
uuid_labels="gpu=\"0\",uuid=\"$a_uuid\""
counted=$(metric gpufrac_backstop_flagged_total "$uuid_labels,reason=\"no_tenant\"")
still=0
kill -0 "$STRANGER" 2>/dev/null && still=1
verdict=FAIL
((flagged && logged && still)) && le 1 "${counted:-0}" && verdict=PASS
check "process outside gpufrac flagged" $verdict "pid $STRANGER (plain $PYTHON, 1024 MiB): in /v1/backstop as no_tenant $took ms after it allocated; logged: $logged; gpufrac_backstop_flagged_total{reason=no_tenant} ${counted:-absent}; left running (warn mode): $still"
[[ $verdict == PASS ]] || attach "/v1/backstop" "$WORK/backstop.json"
note ""
note "\`GET /v1/backstop\` with the stranger on the GPU: \`$(tail -n +2 "$WORK/backstop.json" | tr -d '\n')\`"
kill -KILL "$STRANGER" 2>/dev/null
wait "$STRANGER" 2>/dev/null

# 6. A tenant whose command clears LD_PRELOAD and allocates above its 1 GiB limit: over_limit.
api POST /v1/tenants "{\"name\": \"escaper\", \"memory\": \"1GiB\", \"gpu\": 0, \"command\": [\"env\", \"-u\", \"LD_PRELOAD\", \"$PYTHON\", \"$WORK/hold.py\", \"3072\", \"$WORK/ready-escaper\"]}" >"$WORK/create-e.json"
PID_E=$(field "$WORK/create-e.json" 'j["pid"]')
STARTED_PIDS+=("${PID_E:-0}")
flagged=0
wait_for 60 test -s "$WORK/ready-escaper" && wait_for 10 offender "${PID_E:-0}" over_limit && flagged=1
e_nvml=$(metric gpufrac_tenant_memory_nvml_bytes "tenant=\"escaper\",gpu=\"0\"")
e_used=$(metric gpufrac_tenant_memory_used_bytes "tenant=\"escaper\",gpu=\"0\"")
verdict=FAIL
((flagged)) && grep -q "event=backstop.flagged pid=$PID_E gpu=0 tenant=escaper reason=over_limit" "$WORK/agent.log" &&
  verdict=PASS
check "tenant that bypassed the interposer flagged" $verdict "tenant escaper (limit 1 GiB, command under env -u LD_PRELOAD, 3072 MiB): over_limit in /v1/backstop and the log: $flagged; NVML $(mib "${e_nvml:-0}") vs charged by the interposer $(mib "${e_used:-0}")"
api DELETE "/v1/tenants/escaper?grace=2s" >/dev/null

RESULT_NOTE="; backstop in warn mode"
REPORT_INTRO="The agent ran against the real driver's NVML and the GPU's ledger in /dev/shm, on a private socket and state file, with \`GPUFRAC_CONTEXT_BYTES=$GPUFRAC_CONTEXT_BYTES\` passed to its tenants."
