# shellcheck shell=bash
# Shared by the real-GPU check scripts (runtime_checks.sh, compute_checks.sh); sourced, never run.
# It holds what both need in the same form, so a fix to the report, the build or the context
# measurement reaches both: the Markdown report (check rows, notes, the EXIT trap that writes it),
# small parsing and arithmetic helpers, the environment cleaning, the report header with the
# GPU/driver/CUDA/torch versions, the gpufrac build, nvcc compiles of tests/gpu/*.cu and the
# context-footprint measurement. Each script keeps its own checks.
#
# The sourcing script sets `set -uo pipefail`, cd's to the repository root and sets REPORT, BUILD
# and PYTHON before calling report_init; the functions below read and set plain globals (the
# scripts read GPUFRAC, NVCC, ARCH, CARD_MIB, CTX_BYTES, ... afterwards).
# shellcheck disable=SC2034  # many globals set here are only read by the sourcing scripts

MIB=1048576

# --- reporting ---------------------------------------------------------------------------------

# report_init NAME WORKDIR TITLE: start the report and install the EXIT trap that writes it.
# NAME is the script's file name without .sh (the log prefix and the report's last line), WORKDIR
# the prefix of its /tmp work directory, TITLE the report's heading. The script may then set
# RESULT_NOTE (appended to the "Result:" line) and REPORT_INTRO (a paragraph after it).
report_init() {
  SCRIPT_NAME=$1
  REPORT_TITLE=$3
  WORK=$(mktemp -d "/tmp/$2.XXXXXX")
  BODY=$WORK/body.md    # the check table, assembled into the report at exit
  NOTES=$WORK/notes.md  # free-text notes and raw output, appended after the table
  : >"$BODY"
  : >"$NOTES"
  GPU_BIN=$WORK/bin     # programs compiled from tests/gpu/*.cu
  mkdir -p "$GPU_BIN"
  FAILURES=0
  CHECKS=0
  HEADER=""
  RESULT_NOTE=""
  REPORT_INTRO=""
  trap finish EXIT
}

log() { echo "[$SCRIPT_NAME] $*" >&2; }

# check NAME PASS|FAIL|SKIP|INFO DETAILS: one row of the results table, echoed as it happens.
# INFO rows are comparisons without a target (compute_checks.sh): they are neither counted nor
# failed. SKIP rows count as checks that did not fail.
check() {
  local name=$1 verdict=$2 details=$3
  [[ $verdict != INFO ]] && CHECKS=$((CHECKS + 1))
  [[ $verdict == FAIL ]] && FAILURES=$((FAILURES + 1))
  printf '| %s | **%s** | %s |\n' "$name" "$verdict" "${details//|/\\|}" >>"$BODY"
  log "$verdict  $name: $details"
}

note() { printf '%s\n' "$*" >>"$NOTES"; }
attach() {  # attach TITLE FILE: a log excerpt in a fenced block
  {
    printf '\n<details><summary>%s</summary>\n\n```\n' "$1"
    tail -c 6000 "$2" 2>/dev/null
    printf '```\n</details>\n'
  } >>"$NOTES"
}

# The EXIT trap: writes the report whichever way the script ends (an early `exit 1` included),
# and turns any failed check, or no check at all, into exit status 1.
# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
  local status=$?
  local result="PASS"
  ((FAILURES > 0 || CHECKS == 0)) && result="FAIL"
  {
    echo "# $REPORT_TITLE"
    echo
    echo "$HEADER"
    echo
    echo "Result: **$result** ($((CHECKS - FAILURES))/$CHECKS checks did not fail$RESULT_NOTE)."
    echo
    if [[ -n $REPORT_INTRO ]]; then
      echo "$REPORT_INTRO"
      echo
    fi
    echo "| check | result | measured |"
    echo "| --- | --- | --- |"
    cat "$BODY"
    echo
    if [[ -s $NOTES ]]; then
      echo "## Notes"
      echo
      cat "$NOTES"
    fi
    echo
    echo "Produced by \`tests/gpu/$SCRIPT_NAME.sh\`; see \`tests/gpu/README.md\`."
  } >"$WORK/report.md"
  if ! mkdir -p "$(dirname "$REPORT")" || ! cp "$WORK/report.md" "$REPORT"; then
    log "cannot write the report to $REPORT"
  fi
  cat "$WORK/report.md"
  log "report written to $REPORT (work files in $WORK)"
  if ((FAILURES > 0 || CHECKS == 0)); then exit 1; fi
  exit "$status"
}

# --- parsing and arithmetic --------------------------------------------------------------------

# A field of the first JSON object (a line starting with "{") that has it: json_get FILE KEY;
# empty if absent. Booleans print as true/false, lists space-separated, floats with 4 digits.
json_get() {
  "$PYTHON" - "$1" "$2" <<'EOF' 2>/dev/null
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        obj = json.loads(line)
        if sys.argv[2] in obj:
            v = obj[sys.argv[2]]
            if isinstance(v, bool):
                print(str(v).lower())
            elif isinstance(v, list):
                print(" ".join(str(x) for x in v))
            elif isinstance(v, float):
                print("%.4g" % v)
            else:
                print(v)
            break
EOF
}

# A key=value field from a line of alloc_apis/launch_overhead output: kv_get "LINE" KEY.
kv_get() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

# Arithmetic on 64-bit sizes and comparisons, via awk: bash has no floats, and awk's doubles are
# exact for integers up to 2^53.
calc() { awk "BEGIN { printf \"%.0f\", $1 }"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
pct() { awk -v r="$1" 'BEGIN { printf "%.1f%%", r * 100 }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END {
  if (NR == 0) { print ""; exit } ; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# within PCT A B: |A - B| <= PCT% of B
within() { awk -v a="$2" -v b="$3" -v p="$1" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= b * p / 100) }'; }
# le A B: A <= B
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# --- environment -------------------------------------------------------------------------------

# clean_env [VAR...]: nothing from a simulated-driver setup or an outer gpufrac may leak into the
# checks; VARs are unset as well (compute_checks.sh adds the MPS ones).
clean_env() {
  unset LD_PRELOAD GPUFRAC_TENANT GPUFRAC_PASSTHROUGH GPUFRAC_CUDA_LIBRARY GPUFRAC_LIBRARY \
    GPUFRAC_GPU GPUFRAC_TENANT_NAME CUDA_VISIBLE_DEVICES PYTORCH_CUDA_ALLOC_CONF \
    PYTORCH_NO_CUDA_MEMORY_CACHING "$@"
  local v
  for v in $(env | sed -n 's/^\(GPUFRAC_SIM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
  if [[ ${LD_LIBRARY_PATH:-} == *lib/sim* ]]; then
    LD_LIBRARY_PATH=$(tr ':' '\n' <<<"$LD_LIBRARY_PATH" | grep -v 'lib/sim' | paste -sd: -)
    export LD_LIBRARY_PATH
    log "removed the simulated driver (lib/sim) from LD_LIBRARY_PATH"
  fi
}

# probe_versions [FIELD...]: what the report header names. Sets NVCC and CUDA_ROOT (nvcc from PATH,
# else CUDA_HOME or /usr/local/cuda), GPU_LINE (nvidia-smi's CSV line for GPU 0: name,
# memory.total, driver_version, compute_cap, then the extra FIELDs), GPU_NAME, CARD_MIB, DRIVER, CC,
# NVCC_VERSION and TORCH_VERSION (empty when torch does not import).
probe_versions() {
  local fields=name,memory.total,driver_version,compute_cap
  (($#)) && fields+=$(printf ',%s' "$@")
  if command -v nvcc >/dev/null; then
    NVCC=$(command -v nvcc)
  else
    NVCC=${CUDA_HOME:-/usr/local/cuda}/bin/nvcc
  fi
  CUDA_ROOT=$(cd "$(dirname "$NVCC")/.." 2>/dev/null && pwd)
  GPU_LINE=$(nvidia-smi --query-gpu="$fields" --format=csv,noheader,nounits -i 0 2>/dev/null)
  GPU_NAME=$(cut -d, -f1 <<<"$GPU_LINE" | sed 's/^ *//;s/ *$//')
  CARD_MIB=$(cut -d, -f2 <<<"$GPU_LINE" | tr -d ' ')
  DRIVER=$(cut -d, -f3 <<<"$GPU_LINE" | tr -d ' ')
  CC=$(cut -d, -f4 <<<"$GPU_LINE" | tr -d ' ')
  NVCC_VERSION=$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \(.*\)$/\1/p')
  TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__, "(CUDA", str(torch.version.cuda) + ")")' 2>/dev/null)
}

# set_header [GPU_EXTRA [LINE...]]: the report's header list. GPU_EXTRA is appended inside the
# parentheses of the GPU line; each LINE becomes one more list item at the end.
set_header() {
  local gpu_extra=${1:-} line
  HEADER="- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')
- host: $(hostname)
- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src has uncommitted changes)')
- GPU: ${GPU_NAME:-none found} (${CARD_MIB:-?} MiB, compute capability ${CC:-?}$gpu_extra)
- driver: ${DRIVER:-unknown}
- CUDA (nvcc): ${NVCC_VERSION:-nvcc not found}
- PyTorch: ${TORCH_VERSION:-not importable}"
  (($#)) && shift
  for line in "$@"; do HEADER+=$'\n'"- $line"; done
}

# require_gpu: without a GPU nothing else can run; the report then says so. Sets ARCH for nvcc.
require_gpu() {
  if [[ -z $GPU_LINE || -z $CARD_MIB ]]; then
    check "GPU present" FAIL "nvidia-smi found no GPU; these checks need a real NVIDIA GPU"
    exit 1
  fi
  ARCH="sm_${CC//./}"
}

# --- build -------------------------------------------------------------------------------------

# build_gpufrac: the two targets the checks run, one "build gpufrac" row. Sets GPUFRAC (the CLI)
# and BUILT (1 when usable). GPUFRAC_GPU_PREBUILT=DIR skips the build for machines without the
# build dependencies.
# shellcheck disable=SC2153  # BUILD is set by the sourcing script
build_gpufrac() {
  GPUFRAC=$BUILD/bin/gpufrac
  BUILT=0
  if [[ -n ${GPUFRAC_GPU_PREBUILT:-} ]]; then
    if [[ -x $GPUFRAC && -f $BUILD/lib/libgpufrac.so ]]; then
      check "build gpufrac" PASS "prebuilt: $BUILD (GPUFRAC_GPU_PREBUILT); not rebuilt"
      BUILT=1
    else
      check "build gpufrac" FAIL "GPUFRAC_GPU_PREBUILT=$BUILD lacks bin/gpufrac or lib/libgpufrac.so"
    fi
  elif ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    check "build gpufrac" FAIL "cmake or ninja is not installed; install them or set GPUFRAC_GPU_PREBUILT"
  elif ! cmake -S . -B "$BUILD" -G Ninja -DGPUFRAC_BENCHMARKS=OFF >"$WORK/configure.log" 2>&1; then
    # Name what is missing: the top-level CMakeLists requires GTest, CLI11, nlohmann_json and
    # yaml-cpp even for the two targets built here, and this machine has no network to fetch them.
    local missing
    missing=$(grep -oE 'provided by "[^"]+"|Could NOT find [A-Za-z0-9_-]+' "$WORK/configure.log" |
      sed 's/provided by "\(.*\)"/\1/;s/Could NOT find //' | sort -u | paste -sd, - | sed 's/,/, /g')
    check "build gpufrac" FAIL "cmake configure failed${missing:+; missing packages: $missing} (Debian: libgtest-dev libcli11-dev nlohmann-json3-dev libyaml-cpp-dev). This script installs nothing (no network); install them, or build elsewhere and set GPUFRAC_GPU_PREBUILT=DIR"
    attach "cmake configure log" "$WORK/configure.log"
  elif ! cmake --build "$BUILD" --target gpufrac gpufrac_interposer >"$WORK/build.log" 2>&1; then
    check "build gpufrac" FAIL "cmake --build failed (log below)"
    attach "build log" "$WORK/build.log"
  else
    check "build gpufrac" PASS "$BUILD/bin/gpufrac, $BUILD/lib/libgpufrac.so"
    BUILT=1
  fi
}

# nvcc_compile PROG: tests/gpu/PROG.cu into $GPU_BIN/PROG for this GPU's ARCH, log in
# $WORK/nvcc-PROG.log; fails with nvcc. The stub directory only satisfies the link; at run time the
# driver's libcuda.so.1 is used.
nvcc_compile() {
  "$NVCC" -O2 -std=c++17 -arch="$ARCH" -o "$GPU_BIN/$1" "tests/gpu/$1.cu" \
    -L"$CUDA_ROOT/lib64/stubs" -lcuda >"$WORK/nvcc-$1.log" 2>&1
}

# Runs a command under gpufrac on GPU 0 with the measured context charge.
# shellcheck disable=SC2317  # compute_checks.sh invokes it through launch "$@"
grun() { "$GPUFRAC" run --gpu 0 "$@"; }

# --- context footprint -------------------------------------------------------------------------

# measure_context ALLOC_APIS FAIL_DETAILS: what one bare CUDA context takes on the card, charged
# to every tenant through GPUFRAC_CONTEXT_BYTES (exported). ALLOC_APIS is the compiled alloc_apis
# program, or empty when it could not be built: then the default 512 MiB is charged. Writes the
# "context footprint" row (FAIL_DETAILS when unmeasured; returns 1 then, so the caller can attach
# what it has). Sets CTX_BYTES, CTX_MIB, CTX_SOURCE, NVML_DELTA. The program holds its context
# until told to release it, so nvidia-smi can read its per-process use meanwhile.
measure_context() {
  local prog=$1 fail_details=$2 ctx_pid smi_mib
  CTX_BYTES=$((512 * MIB))
  CTX_SOURCE="default (not measured)"
  NVML_DELTA=""
  if [[ -n $prog ]]; then
    rm -f "$WORK/ctx.release"
    "$prog" context "$WORK/ctx.release" >"$WORK/ctx.out" 2>&1 &
    ctx_pid=$!
    for _ in $(seq 600); do
      grep -q '^ready' "$WORK/ctx.out" && break
      kill -0 "$ctx_pid" 2>/dev/null || break
      sleep 0.1
    done
    sleep 0.5
    smi_mib=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits \
      2>/dev/null | awk -F', *' -v p="$ctx_pid" '$1 == p { print $2 }')
    touch "$WORK/ctx.release"
    wait "$ctx_pid"
    NVML_DELTA=$(kv_get "$(grep nvml_delta "$WORK/ctx.out")" nvml_delta)
    if [[ $smi_mib =~ ^[0-9]+$ ]] && ((smi_mib > 0)); then
      CTX_BYTES=$((smi_mib * MIB))
      CTX_SOURCE="nvidia-smi --query-compute-apps (per process)"
    elif [[ $NVML_DELTA =~ ^[0-9]+$ ]] && ((NVML_DELTA > 0)); then
      # Whole-device delta, rounded up to MiB; right when nothing else uses the GPU meanwhile.
      CTX_BYTES=$(((NVML_DELTA + MIB - 1) / MIB * MIB))
      CTX_SOURCE="NVML device used before/after (nvidia-smi listed no process for pid $ctx_pid)"
    fi
  fi
  CTX_MIB=$((CTX_BYTES / MIB))
  export GPUFRAC_CONTEXT_BYTES="${CTX_MIB}MiB"
  if [[ $CTX_SOURCE == default* ]]; then
    check "context footprint" FAIL "$fail_details"
    return 1
  fi
  check "context footprint" PASS "$CTX_MIB MiB from $CTX_SOURCE (NVML delta: ${NVML_DELTA:-n/a} B); GPUFRAC_CONTEXT_BYTES=$GPUFRAC_CONTEXT_BYTES for every run"
}
