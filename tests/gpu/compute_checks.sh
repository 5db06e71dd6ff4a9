#!/usr/bin/env bash
# Real-GPU checks of gpufrac's compute sharing (time-slice leases). Run from anywhere on a machine
# with one NVIDIA GPU, CUDA (nvcc), cmake, ninja and PyTorch; needs no network, installs nothing,
# and changes no GPU setting (no nvidia-smi -c/-pm/-lgc, no MPS).
#
#   tests/gpu/compute_checks.sh [REPORT.md]      (default: docs/results/gpu-compute.md)
#
# Builds gpufrac into build-gpu/ (or uses GPUFRAC_GPU_PREBUILT=DIR holding bin/gpufrac and
# lib/libgpufrac.so), measures the context footprint as runtime_checks.sh does, then runs PyTorch
# workloads (tests/gpu/torch_compute.py) alone, in pairs under gpufrac, and in pairs without it,
# each for a fixed number of seconds counted in 1 s windows. Prints a Markdown report to stdout and
# to REPORT.md. Exits 1 if any check fails; the report is written regardless.
# See tests/gpu/README.md for what each check proves.
#
# Knobs (environment): GPUFRAC_COMPUTE_SECONDS (10: measured seconds per run),
# GPUFRAC_COMPUTE_N (4096: matmul size), GPUFRAC_COMPUTE_SYNC (20: matmuls per synchronize),
# GPUFRAC_COMPUTE_TRAIN_N (8192), GPUFRAC_COMPUTE_TRAIN_SYNC (4), GPUFRAC_COMPUTE_PERIOD_MS (25:
# inference period), GPUFRAC_COMPUTE_TOL_PP (5), GPUFRAC_COMPUTE_MIN_IN (0.8: fraction of windows
# that must be within the tolerance), PYTHON (python3).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
REPORT=${1:-docs/results/gpu-compute.md}
BUILD=${GPUFRAC_GPU_PREBUILT:-build-gpu}
PYTHON=${PYTHON:-python3}
DURATION=${GPUFRAC_COMPUTE_SECONDS:-10}
MM_N=${GPUFRAC_COMPUTE_N:-4096}
MM_SYNC=${GPUFRAC_COMPUTE_SYNC:-20}
TRAIN_N=${GPUFRAC_COMPUTE_TRAIN_N:-8192}
TRAIN_SYNC=${GPUFRAC_COMPUTE_TRAIN_SYNC:-4}
PERIOD_MS=${GPUFRAC_COMPUTE_PERIOD_MS:-25}
TOL_PP=${GPUFRAC_COMPUTE_TOL_PP:-5}
MIN_IN=${GPUFRAC_COMPUTE_MIN_IN:-0.8}
TP=tests/gpu/torch_compute.py

# The report, the helpers, the build and the context measurement, shared with runtime_checks.sh.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/tests/gpu/lib.sh"
report_init compute_checks gpufrac-compute-checks "gpufrac compute sharing on a real GPU"
# INFO rows (runs without gpufrac) are not counted; the reader needs to know how shares are read.
RESULT_NOTE="; INFO rows are comparisons without a target"
REPORT_INTRO="Every run measures ${DURATION} s in 1 s windows after a warm-up; all processes of a run start
their windows at the same instant. A share is a window's rate over the median window rate of the
same workload running alone without gpufrac."

# --- environment -------------------------------------------------------------------------------

# MPS would change how the processes share the GPU; these checks run without it.
clean_env CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
# A run without gpufrac is pinned to GPU 0 as well, as `gpufrac run --gpu 0` pins its tenants.
PLAIN_ENV=(env CUDA_VISIBLE_DEVICES=0)

probe_versions compute_mode
COMPUTE_MODE=$(cut -d, -f5 <<<"$GPU_LINE" | tr -d ' ')
GPU_COUNT=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
set_header ", compute mode ${COMPUTE_MODE:-?}; ${GPU_COUNT} GPU(s) on the machine, GPU 0 used" \
  "settings: ${DURATION} s per run; matmul ${MM_N}x${MM_N} fp16, sync every ${MM_SYNC}; training ${TRAIN_N}x${TRAIN_N} fp16, sync every ${TRAIN_SYNC}; inference period ${PERIOD_MS} ms; share tolerance +-${TOL_PP} pp in >= ${MIN_IN} of windows and at the median; GPUFRAC_COMPUTE_SLICE_MS=${GPUFRAC_COMPUTE_SLICE_MS:-default}"
require_gpu
# Other processes on the GPU would skew every share; say so in the report (they are not stopped).
OTHERS=$(nvidia-smi --query-compute-apps=pid,process_name --format=csv,noheader -i 0 2>/dev/null |
  paste -sd';' -)
[[ -n $OTHERS ]] && note "- Other processes were on GPU 0 when the checks started: $OTHERS. Shares measured next to them are not meaningful."
[[ -n $COMPUTE_MODE && $COMPUTE_MODE != Default ]] &&
  note "- GPU 0's compute mode is $COMPUTE_MODE (not changed by this script); two processes may not be able to share it."

# --- build and context footprint -----------------------------------------------------------------

build_gpufrac

# Only alloc_apis.cu is needed here, for the context measurement; no row of its own.
ctx_prog=""
if nvcc_compile alloc_apis; then
  ctx_prog=$GPU_BIN/alloc_apis
else
  attach "nvcc alloc_apis.cu" "$WORK/nvcc-alloc_apis.log"
fi
# Memory is not what these checks measure: the default charge only shrinks each tenant's room.
if ! measure_context "$ctx_prog" "could not measure it (alloc_apis.cu compile or run failed); charging the default 512 MiB"; then
  [[ -f $WORK/ctx.out ]] && attach "alloc_apis context" "$WORK/ctx.out"
fi

ALL_CHECKS=("alone baselines" "1:1 share" "1:3 share" "strict 0.5 alone" "fair 0.25 alone"
  "CUDA graph next to matmul at 1:1" "inference p99 next to batch training")
if ((!BUILT)); then
  for c in "${ALL_CHECKS[@]}"; do check "$c" FAIL "not run: gpufrac was not built"; done
  exit 1
fi
if [[ -z $TORCH_VERSION ]]; then
  for c in "${ALL_CHECKS[@]}"; do check "$c" FAIL "not run: '$PYTHON -c \"import torch\"' failed"; done
  exit 1
fi

# --- running a scenario ------------------------------------------------------------------------

# Workload command lines (torch_compute.py adds --name/--ready-dir/--out per process).
MATMUL=("$PYTHON" "$TP" matmul --seconds "$DURATION" --n "$MM_N" --sync-every "$MM_SYNC")
GRAPH=("$PYTHON" "$TP" graph --seconds "$DURATION" --n "$MM_N" --graph-matmuls 4 --sync-every 5)
TRAIN=("$PYTHON" "$TP" matmul --seconds "$DURATION" --n "$TRAIN_N" --sync-every "$TRAIN_SYNC")
INFER=("$PYTHON" "$TP" infer --seconds "$DURATION" --period-ms "$PERIOD_MS" --burst 1)

SCEN=""
SCEN_PIDS=()
SCEN_NAMES=()
# begin SCENARIO: a fresh directory for its ready files, results and logs.
begin() {
  SCEN=$1
  SCEN_PIDS=()
  SCEN_NAMES=()
  rm -rf "${WORK:?}/$SCEN"
  mkdir -p "$WORK/$SCEN"
}
# launch NAME CMD...: start one process of the current scenario in the background. CMD ends with
# the workload's torch_compute.py arguments, to which the common ones are appended.
launch() {
  local name=$1
  shift
  "$@" --name "$name" --ready-dir "$WORK/$SCEN" --out "$WORK/$SCEN/$name.json" \
    >"$WORK/$SCEN/$name.log" 2>&1 &
  SCEN_PIDS+=($!)
  SCEN_NAMES+=("$name")
}
# go: wait until every process is warmed up (ready file) or one died, set the common start one
# second ahead, wait for all to finish. Returns 1 (and attaches logs) if any gave no result.
go() {
  local n=${#SCEN_PIDS[@]} ready alive p i ok=0
  for _ in $(seq 3000); do
    ready=$(find "$WORK/$SCEN" -maxdepth 1 -name '*.ready' | wc -l)
    ((ready >= n)) && break
    alive=1
    for p in "${SCEN_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || alive=0; done
    ((alive)) || break
    sleep 0.1
  done
  # Written even when a process died, so the others finish (their results are then not used).
  awk -v t="$(date +%s.%N)" 'BEGIN { printf "%.6f\n", t + 1.0 }' >"$WORK/$SCEN/go.tmp"
  mv "$WORK/$SCEN/go.tmp" "$WORK/$SCEN/go"
  for i in "${!SCEN_PIDS[@]}"; do
    wait "${SCEN_PIDS[$i]}"
    local rc=$?
    if ((rc != 0)) || [[ ! -s $WORK/$SCEN/${SCEN_NAMES[$i]}.json ]]; then
      ok=1
      attach "$SCEN: ${SCEN_NAMES[$i]} (exit $rc)" "$WORK/$SCEN/${SCEN_NAMES[$i]}.log"
    fi
  done
  return $ok
}
res() { echo "$WORK/$1/$2.json"; }
# windows SCEN NAME: the per-window counts of one process, for the notes.
windows() { json_get "$(res "$1" "$2")" windows; }

# share_check NAME TARGET ALONE RUN [INFO]: one row comparing RUN's per-window rates with the
# median rate of ALONE; PASS when the median share and >= MIN_IN of the windows are within TOL_PP
# percentage points of TARGET. With INFO, a comparison row without a verdict.
share_check() {
  local name=$1 target=$2 alone=$3 run=$4 verdict=${5:-}
  local out=$WORK/share.$RANDOM.json
  "$PYTHON" "$TP" share --alone "$alone" --run "$run" --target "$target" --tol-pp "$TOL_PP" \
    --min-in "$MIN_IN" >"$out" 2>&1
  local ok med shares inn total
  ok=$(json_get "$out" pass)
  med=$(json_get "$out" median_share)
  shares=$(json_get "$out" shares)
  inn=$(json_get "$out" windows_in)
  total=$(json_get "$out" windows)
  if [[ -z $verdict ]]; then
    if [[ $ok == true ]]; then verdict=PASS; else verdict=FAIL; fi
  fi
  if [[ $verdict == INFO ]]; then
    check "$name" "$verdict" "median share $(pct "${med:-0}") (no target; $(pct "$target") would be an even split); per window: ${shares:-none}"
  else
    check "$name" "$verdict" "median share $(pct "${med:-0}") (target $(pct "$target") +-${TOL_PP} pp); ${inn:-0}/${total:-0} windows within; per window: ${shares:-none}"
  fi
}
# ratio ALONE RUN: the median throughput ratio; sets RATIO and RATIOS.
ratio() {
  local out=$WORK/ratio.$RANDOM.json
  "$PYTHON" "$TP" ratio --alone "$1" --run "$2" >"$out" 2>&1
  RATIO=$(json_get "$out" ratio)
  RATIOS=$(json_get "$out" ratios)
}

note "### Per-window counts"
note ""
note "Work units completed in each 1 s window (matmuls for matmul and graph runs, steps for inference)."
note ""
note "| run | process | per window |"
note "| --- | --- | --- |"
# record SCEN: add every process's windows to the notes table.
record() {
  local name
  for name in "${SCEN_NAMES[@]}"; do
    [[ -s $(res "$1" "$name") ]] && note "| $1 | $name | $(windows "$1" "$name") |"
  done
}

# --- baselines: each workload alone, without gpufrac --------------------------------------------

baseline_ok=1
for w in matmul graph train infer; do
  begin "alone-$w"
  case $w in
    matmul) launch mm "${PLAIN_ENV[@]}" "${MATMUL[@]}" ;;
    graph) launch graph "${PLAIN_ENV[@]}" "${GRAPH[@]}" ;;
    train) launch train "${PLAIN_ENV[@]}" "${TRAIN[@]}" ;;
    infer) launch infer "${PLAIN_ENV[@]}" "${INFER[@]}" ;;
  esac
  go || baseline_ok=0
  record "alone-$w"
done
MM_ALONE=$(res alone-matmul mm)
GRAPH_ALONE=$(res alone-graph graph)
TRAIN_ALONE=$(res alone-train train)
INFER_ALONE=$(res alone-infer infer)
if ((baseline_ok)); then
  check "alone baselines (no gpufrac)" PASS "median per s: $("$PYTHON" - "$MM_ALONE" "$GRAPH_ALONE" "$TRAIN_ALONE" <<'EOF'
import json, statistics, sys
names = ["matmul", "graph (matmuls)", "training"]
parts = []
for name, path in zip(names, sys.argv[1:]):
    w = json.loads(open(path).readline())["windows"]
    parts.append("%s %.0f" % (name, statistics.median(w)))
print("; ".join(parts))
EOF
); inference p50 $(json_get "$INFER_ALONE" p50_ms) ms, p99 $(json_get "$INFER_ALONE" p99_ms) ms over $(json_get "$INFER_ALONE" units) steps"
else
  check "alone baselines (no gpufrac)" FAIL "a baseline run gave no result (logs in the notes); the checks that need it fail too"
fi

# --- 1. two matmul loops: 1:1 and 1:3 under gpufrac, and without gpufrac -------------------------

pair() {  # pair SCEN FRACTION_A FRACTION_B: two matmul tenants under gpufrac
  begin "$1"
  launch a grun --fraction "$2" --tenant "cc-$1-a" -- "${MATMUL[@]}"
  launch b grun --fraction "$3" --tenant "cc-$1-b" -- "${MATMUL[@]}"
  go
  local rc=$?
  record "$1"
  return $rc
}
if pair pair-1to1 0.5 0.5; then
  share_check "1:1 share, tenant A (--fraction 0.5)" 0.5 "$MM_ALONE" "$(res pair-1to1 a)"
  share_check "1:1 share, tenant B (--fraction 0.5)" 0.5 "$MM_ALONE" "$(res pair-1to1 b)"
else
  check "1:1 share" FAIL "a tenant gave no result (logs in the notes)"
fi
if pair pair-1to3 0.25 0.75; then
  share_check "1:3 share, tenant A (--fraction 0.25)" 0.25 "$MM_ALONE" "$(res pair-1to3 a)"
  share_check "1:3 share, tenant B (--fraction 0.75)" 0.75 "$MM_ALONE" "$(res pair-1to3 b)"
else
  check "1:3 share" FAIL "a tenant gave no result (logs in the notes)"
fi
begin pair-plain
launch a "${PLAIN_ENV[@]}" "${MATMUL[@]}"
launch b "${PLAIN_ENV[@]}" "${MATMUL[@]}"
if go; then
  record pair-plain
  # No target: the driver's own time-slicing, for comparison with the rows above.
  share_check "same pair without gpufrac, process A" 0.5 "$MM_ALONE" "$(res pair-plain a)" INFO
  share_check "same pair without gpufrac, process B" 0.5 "$MM_ALONE" "$(res pair-plain b)" INFO
else
  check "same pair without gpufrac" INFO "a process gave no result (logs in the notes)"
fi

# --- 2. strict 0.5 alone; 3. a lone fair tenant at 0.25 -----------------------------------------

begin strict
launch s grun --fraction 0.5 --mode strict --tenant cc-strict -- "${MATMUL[@]}"
if go; then
  record strict
  ratio "$MM_ALONE" "$(res strict s)"
  if awk -v r="$RATIO" 'BEGIN { exit !(r >= 0.47 && r <= 0.53) }'; then v=PASS; else v=FAIL; fi
  check "strict 0.5 alone (--mode strict)" $v "median throughput $(pct "${RATIO:-0}") of alone without gpufrac (target 50% +-3); per window: $RATIOS"
else
  check "strict 0.5 alone (--mode strict)" FAIL "no result (log in the notes)"
fi

begin fair025
launch f grun --fraction 0.25 --tenant cc-fair -- "${MATMUL[@]}"
if go; then
  record fair025
  ratio "$MM_ALONE" "$(res fair025 f)"
  if le 0.95 "${RATIO:-0}"; then v=PASS; else v=FAIL; fi
  check "fair 0.25 alone" $v "median throughput $(pct "${RATIO:-0}") of alone without gpufrac (target >= 95%: idle share is lent); per window: $RATIOS"
else
  check "fair 0.25 alone" FAIL "no result (log in the notes)"
fi

# --- 4. a CUDA-graph replayer next to a matmul loop at 1:1 --------------------------------------

begin graph-1to1
launch graph grun --fraction 0.5 --tenant cc-graph -- "${GRAPH[@]}"
launch mm grun --fraction 0.5 --tenant cc-graph-mm -- "${MATMUL[@]}"
if go; then
  record graph-1to1
  share_check "CUDA graph at 1:1, graph tenant" 0.5 "$GRAPH_ALONE" "$(res graph-1to1 graph)"
  share_check "CUDA graph at 1:1, matmul tenant" 0.5 "$MM_ALONE" "$(res graph-1to1 mm)"
else
  check "CUDA graph next to matmul at 1:1" FAIL "a tenant gave no result (logs in the notes)"
fi
begin graph-plain
launch graph "${PLAIN_ENV[@]}" "${GRAPH[@]}"
launch mm "${PLAIN_ENV[@]}" "${MATMUL[@]}"
if go; then
  record graph-plain
  share_check "CUDA graph pair without gpufrac, graph" 0.5 "$GRAPH_ALONE" "$(res graph-plain graph)" INFO
  share_check "CUDA graph pair without gpufrac, matmul" 0.5 "$MM_ALONE" "$(res graph-plain mm)" INFO
else
  check "CUDA graph pair without gpufrac" INFO "a process gave no result (logs in the notes)"
fi

# The first mechanism for comparison: leases charged by wall time, no measured tail.
begin graph-walltime
launch graph env GPUFRAC_COMPUTE_DRAIN=off "$GPUFRAC" run --gpu 0 --fraction 0.5 --tenant cc-graph -- "${GRAPH[@]}"
launch mm env GPUFRAC_COMPUTE_DRAIN=off "$GPUFRAC" run --gpu 0 --fraction 0.5 --tenant cc-graph-mm -- "${MATMUL[@]}"
if go; then
  record graph-walltime
  share_check "CUDA graph at 1:1, leases charged by wall time (GPUFRAC_COMPUTE_DRAIN=off), graph" 0.5 "$GRAPH_ALONE" "$(res graph-walltime graph)" INFO
else
  check "CUDA graph at 1:1, leases charged by wall time" INFO "a tenant gave no result (logs in the notes)"
fi

# --- 5. small-batch inference next to batch training -------------------------------------------

latency() { "$PYTHON" "$TP" latency --run "$1" >"$WORK/lat.json" 2>&1; }
lat_text() {  # lat_text RESULT: "p50 X ms, p99 Y ms (N steps, M missed periods)"
  latency "$1"
  echo "p50 $(json_get "$WORK/lat.json" p50_ms) ms, p99 $(json_get "$WORK/lat.json" p99_ms) ms, max $(json_get "$WORK/lat.json" max_ms) ms ($(json_get "$WORK/lat.json" steps) steps, $(json_get "$WORK/lat.json" missed_periods) missed periods)"
}

begin infer-gpufrac
launch infer grun --fraction 0.5 --priority inference --tenant cc-infer -- "${INFER[@]}"
launch train grun --fraction 0.5 --priority batch --tenant cc-train -- "${TRAIN[@]}"
gpufrac_ok=0
go && gpufrac_ok=1
record infer-gpufrac
begin infer-plain
launch infer "${PLAIN_ENV[@]}" "${INFER[@]}"
launch train "${PLAIN_ENV[@]}" "${TRAIN[@]}"
plain_ok=0
go && plain_ok=1
record infer-plain

if ((gpufrac_ok)) && [[ -s $INFER_ALONE && -s $TRAIN_ALONE ]]; then
  alone_p99=$(json_get "$INFER_ALONE" p99_ms)
  latency "$(res infer-gpufrac infer)"
  g_p99=$(json_get "$WORK/lat.json" p99_ms)
  ratio "$TRAIN_ALONE" "$(res infer-gpufrac train)"
  g_train=$RATIO
  bound=$(awk -v a="$alone_p99" 'BEGIN { printf "%.4g", a * 1.15 }')
  if [[ -n $g_p99 ]] && le "$g_p99" "$bound"; then v=PASS; else v=FAIL; fi
  check "inference p99 next to batch training (gpufrac)" $v "inference alone: $(lat_text "$INFER_ALONE"); next to training under gpufrac: $(lat_text "$(res infer-gpufrac infer)"); p99 ${g_p99:-?} ms vs bound 1.15 x alone = $bound ms; training throughput $(pct "${g_train:-0}") of alone (per window: $RATIOS)"
else
  check "inference p99 next to batch training (gpufrac)" FAIL "a process gave no result (logs in the notes)"
fi
if ((plain_ok)) && [[ -s $INFER_ALONE && -s $TRAIN_ALONE ]]; then
  ratio "$TRAIN_ALONE" "$(res infer-plain train)"
  check "inference next to training without gpufrac" INFO "inference: $(lat_text "$(res infer-plain infer)") (alone p99 $(json_get "$INFER_ALONE" p99_ms) ms); training throughput $(pct "${RATIO:-0}") of alone (per window: $RATIOS)"
else
  check "inference next to training without gpufrac" INFO "a process gave no result (logs in the notes)"
fi

# The same under gpufrac without the bound on queued work: how much of the latency the bound saves.
begin infer-unbounded
launch infer env GPUFRAC_COMPUTE_INFLIGHT=off "$GPUFRAC" run --gpu 0 --fraction 0.5 --priority inference --tenant cc-infer -- "${INFER[@]}"
launch train env GPUFRAC_COMPUTE_INFLIGHT=off "$GPUFRAC" run --gpu 0 --fraction 0.5 --priority batch --tenant cc-train -- "${TRAIN[@]}"
if go && [[ -s $TRAIN_ALONE ]]; then
  record infer-unbounded
  ratio "$TRAIN_ALONE" "$(res infer-unbounded train)"
  check "inference next to training, gpufrac without the in-flight bound (GPUFRAC_COMPUTE_INFLIGHT=off)" INFO "inference: $(lat_text "$(res infer-unbounded infer)"); training throughput $(pct "${RATIO:-0}") of alone"
else
  record infer-unbounded
  check "inference next to training, gpufrac without the in-flight bound" INFO "a process gave no result (logs in the notes)"
fi

exit 0
