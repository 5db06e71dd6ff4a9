#!/usr/bin/env bash
# Real-GPU checks of the gpufrac runtime (interposer + gpufrac run). Run from anywhere on a machine
# with an NVIDIA GPU, CUDA (nvcc), cmake, ninja and PyTorch; needs no network and installs nothing.
#
#   tests/gpu/runtime_checks.sh [REPORT.md]      (default: docs/results/gpu-runtime.md)
#
# Builds gpufrac into build-gpu/ (or uses GPUFRAC_GPU_PREBUILT=DIR holding bin/gpufrac and
# lib/libgpufrac.so), compiles tests/gpu/*.cu with nvcc, runs every check, and prints a Markdown
# report to stdout and to REPORT.md. Exits 1 if any check fails; the report is written regardless.
# See tests/gpu/README.md for what each check proves.
#
# Knobs (environment): GPUFRAC_GPU_LAUNCHES (200000), GPUFRAC_GPU_REPEATS (5),
# GPUFRAC_GPU_LAUNCH_BUDGET_NS (500: most added ns per launch that still passes), PYTHON (python3).
#
# shellcheck disable=SC2119  # lib.sh functions called without their optional arguments
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
REPORT=${1:-docs/results/gpu-runtime.md}
BUILD=${GPUFRAC_GPU_PREBUILT:-build-gpu}
PYTHON=${PYTHON:-python3}
LAUNCHES=${GPUFRAC_GPU_LAUNCHES:-200000}
REPEATS=${GPUFRAC_GPU_REPEATS:-5}
LAUNCH_BUDGET_NS=${GPUFRAC_GPU_LAUNCH_BUDGET_NS:-500}

# The report, the helpers, the build and the context measurement, shared with compute_checks.sh.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/tests/gpu/lib.sh"
report_init runtime_checks gpufrac-gpu-checks "gpufrac runtime on a real GPU"

# --- environment -------------------------------------------------------------------------------

clean_env
probe_versions
set_header
require_gpu
CARD_BYTES=$((CARD_MIB * MIB))

# --- build -------------------------------------------------------------------------------------

build_gpufrac

COMPILED=1
for prog in alloc_apis launch_overhead pool_drain; do
  if ! nvcc_compile "$prog"; then
    COMPILED=0
    check "nvcc $prog.cu" FAIL "compile failed with $NVCC -arch=$ARCH (log below)"
    attach "nvcc $prog.cu" "$WORK/nvcc-$prog.log"
  fi
done
((COMPILED)) && check "nvcc tests/gpu/*.cu" PASS "alloc_apis, launch_overhead, pool_drain for $ARCH"

# --- context footprint -------------------------------------------------------------------------

ctx_prog=""
((COMPILED)) && ctx_prog=$GPU_BIN/alloc_apis
measure_context "$ctx_prog" "could not measure it; charging the default 512 MiB" ||
  attach "alloc_apis context" "$WORK/ctx.out"

# --- PyTorch: the view -------------------------------------------------------------------------

have_torch=0
[[ -n $TORCH_VERSION ]] && have_torch=1
TORCH_PY=tests/gpu/torch_checks.py

if ((!BUILT)); then
  for c in "torch view at 0.25" "torch fill, no caching" "torch fill, expandable segments" \
    "two tenants at 0.5" "third tenant at 0.1 refused" "driver allocation APIs" \
    "pool drain under --memory 4GiB" "launch overhead under gpufrac"; do
    check "$c" FAIL "not run: gpufrac was not built"
  done
  exit 1
fi

if ((!have_torch)); then
  for c in "torch view at 0.25" "torch fill, no caching" "torch fill, expandable segments" \
    "two tenants at 0.5" "third tenant at 0.1 refused"; do
    check "$c" FAIL "not run: '$PYTHON -c \"import torch\"' failed"
  done
else
  expected=$(calc "0.25 * $CARD_BYTES")
  grun --fraction 0.25 -- "$PYTHON" "$TORCH_PY" info >"$WORK/torch-info.out" 2>&1
  rc=$?
  t_info=$(json_get "$WORK/torch-info.out" mem_get_info_total)
  t_props=$(json_get "$WORK/torch-info.out" total_memory)
  if ((rc == 0)) && [[ -n $t_info && -n $t_props ]] && within 1 "$t_info" "$expected" &&
    within 1 "$t_props" "$expected"; then
    verdict=PASS
  else
    verdict=FAIL
    attach "torch info" "$WORK/torch-info.out"
  fi
  check "torch view at 0.25" $verdict "mem_get_info total $(mib "${t_info:-0}"), get_device_properties total_memory $(mib "${t_props:-0}"), expected 0.25 x $CARD_MIB MiB = $(mib "$expected") +-1% (exit $rc)"

  # torch_fill LABEL ENV...: fill one tenant at 0.25 to OOM under the given allocator settings.
  torch_fill() {
    local label=$1 file=$WORK/torch-fill-$2.out slack=$3
    shift 3
    env "$@" "$GPUFRAC" run --gpu 0 --fraction 0.25 -- "$PYTHON" "$TORCH_PY" fill --chunk-mib 64 \
      >"$file" 2>&1
    local rc=$?
    local limit alloc reserved oom chunk
    limit=$(json_get "$file" mem_get_info_total)
    alloc=$(json_get "$file" allocated)
    reserved=$(json_get "$file" torch_reserved)
    oom=$(json_get "$file" oom)
    chunk=$(json_get "$file" chunk_bytes)
    if [[ -z $limit || -z $alloc ]]; then
      check "$label" FAIL "no result (exit $rc; log below)"
      attach "$label" "$file"
      return
    fi
    # What the driver holds for the tenant: the tensors, or with expandable segments the mapped
    # pages torch reports as reserved (which can exceed the tensors by part of a segment).
    local held=$alloc
    ((reserved > held)) && held=$reserved
    local upper low
    upper=$(calc "$limit + 2 * $MIB")
    low=$(calc "$limit - ($CTX_BYTES + $chunk + $slack)")
    local used
    used=$(calc "$held + $CTX_BYTES")
    if [[ $oom == true ]] && le "$used" "$upper" && le "$low" "$alloc" &&
      within 1 "$limit" "$(calc "0.25 * $CARD_BYTES")"; then
      verdict=PASS
    else
      verdict=FAIL
      attach "$label" "$file"
    fi
    check "$label" $verdict "limit $(mib "$limit"); tensors $(mib "$alloc") ($(json_get "$file" chunks) x 64 MiB), torch reserved $(mib "$reserved"), + context $CTX_MIB MiB = $(mib "$used") <= limit + 2 MiB; tensors >= limit - context - chunk$( ((slack > 0)) && echo " - $(mib "$slack") segment slack") = $(mib "$low"); OOM raised: ${oom:-?}"
  }
  torch_fill "torch fill, no caching (cuMemAlloc)" plain 0 PYTORCH_NO_CUDA_MEMORY_CACHING=1
  # Expandable segments map 20 MiB pages of one growing segment; a 64 MiB tensor can need one
  # page more than its size, so the lower bound allows a page beyond the chunk.
  torch_fill "torch fill, expandable segments (cuMemCreate)" expandable $((20 * MIB)) \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

  # --- two tenants at 0.5 each, concurrently ---------------------------------------------------
  rm -f "$WORK"/pair-*.json "$WORK/pair.barrier"
  pids=()
  for t in a b; do
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$GPUFRAC" run --gpu 0 --fraction 0.5 --tenant "gpu-check-$t" \
      -- "$PYTHON" "$TORCH_PY" fill --chunk-mib 64 --report "$WORK/pair-$t.json" \
      --barrier "$WORK/pair.barrier" --timeout 300 >"$WORK/pair-$t.out" 2>&1 &
    pids+=($!)
  done
  # Both hold their peak until the barrier exists; wait until both have reported (or died).
  for _ in $(seq 3000); do
    [[ -f $WORK/pair-a.json && -f $WORK/pair-b.json ]] && break
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  # While both are admitted and full, a third tenant must be refused at admission.
  grun --fraction 0.1 -- true >"$WORK/third.out" 2>&1
  third_rc=$?
  touch "$WORK/pair.barrier"
  for p in "${pids[@]}"; do wait "$p"; done
  a_alloc=$(json_get "$WORK/pair-a.json" allocated)
  b_alloc=$(json_get "$WORK/pair-b.json" allocated)
  a_limit=$(json_get "$WORK/pair-a.json" mem_get_info_total)
  b_limit=$(json_get "$WORK/pair-b.json" mem_get_info_total)
  if [[ -n $a_alloc && -n $b_alloc ]]; then
    sum=$(calc "$a_alloc + $b_alloc + 2 * $CTX_BYTES")
    # nvidia-smi rounds the card down to whole MiB while the limits are halves of NVML's exact
    # bytes, hence the 1 MiB.
    if le "$sum" "$(calc "$CARD_BYTES + $MIB")"; then verdict=PASS; else verdict=FAIL; fi
    check "two tenants at 0.5: sum <= card" $verdict "A $(mib "$a_alloc") + B $(mib "$b_alloc") + 2 x context $CTX_MIB MiB = $(mib "$sum") <= card $CARD_MIB MiB (+1 MiB rounding; limits $(mib "$a_limit"), $(mib "$b_limit"))"
    for t in a b; do
      alloc=$(json_get "$WORK/pair-$t.json" allocated)
      limit=$(json_get "$WORK/pair-$t.json" mem_get_info_total)
      low=$(calc "$limit - $CTX_BYTES - 64 * $MIB")
      if ! le "$low" "$alloc"; then
        # Not a gpufrac failure: half of NVML's total includes memory the driver reserves for
        # itself, so the second tenant can meet the card's real end before its own limit.
        note "- Tenant $t stopped at $(mib "$alloc"), short of its limit $(mib "$limit") - context - chunk: the real driver ran out first ($(json_get "$WORK/pair-$t.json" error))."
      fi
    done
  else
    check "two tenants at 0.5: sum <= card" FAIL "a tenant gave no result (logs below)"
    attach "tenant a" "$WORK/pair-a.out"
    attach "tenant b" "$WORK/pair-b.out"
  fi
  if ((third_rc == 2)); then verdict=PASS; else verdict=FAIL; fi
  check "third tenant at 0.1 refused" $verdict "exit code $third_rc (want 2): $(head -c 300 "$WORK/third.out" | tr '\n' ' ')"
fi

# --- driver allocation APIs ----------------------------------------------------------------------

if ((COMPILED)); then
  LIMIT=$((4096 * MIB))
  CHUNK=$((256 * MIB))
  phys_bad=""
  phys_rows=""
  # One tenant process per API: a crash in one path cannot hide the others, and each starts from
  # an empty tenant (the program also frees everything and reports the free memory after).
  for api in cuMemAlloc cuMemAllocPitch cuMemAllocManaged cuMemAllocAsync cuMemAllocFromPoolAsync \
    cuMemCreate cuArrayCreate cuArray3DCreate cuMipmappedArrayCreate; do
    out=$WORK/alloc-$api.out
    grun --memory 4GiB -- "$GPU_BIN/alloc_apis" fill 256 "$api" >"$out" 2>&1
    rc=$?
    line=$(grep "^api=$api " "$out")
    if [[ -z $line ]]; then
      check "$api under --memory 4GiB" FAIL "no result (exit $rc; log in the notes)"
      attach "alloc_apis fill $api" "$out"
      continue
    fi
    filled=$(kv_get "$line" filled)
    last=$(kv_get "$line" last_result)
    total=$(kv_get "$line" info_total)
    fb=$(kv_get "$line" free_before)
    fp=$(kv_get "$line" free_peak)
    fa=$(kv_get "$line" free_after)
    pb=$(kv_get "$line" phys_before_mib)
    pp=$(kv_get "$line" phys_peak_mib)
    used=$(calc "$filled + $CTX_BYTES")
    low=$(calc "$LIMIT - $CTX_BYTES - $CHUNK")
    charged=$(calc "$fb - $fp")
    why=()
    [[ $last == CUDA_ERROR_OUT_OF_MEMORY ]] || why+=("stopped with $last, not OOM")
    le "$used" "$(calc "$LIMIT + 2 * $MIB")" || why+=("over the limit")
    le "$low" "$filled" || why+=("stopped early")
    [[ $total == "$LIMIT" ]] || why+=("cuMemGetInfo total is not 4 GiB")
    within 0.1 "$fa" "$fb" || why+=("free memory after freeing differs from before")
    if ((${#why[@]} == 0)); then verdict=PASS; else verdict=FAIL; fi
    reasons=$(IFS=';' && echo "${why[*]}")
    check "$api under --memory 4GiB" $verdict "filled $(mib "$filled") ($(kv_get "$line" pieces) x 256 MiB) + context $CTX_MIB MiB = $(mib "$used") (limit 4096 MiB, floor $(mib "$low")); cuMemGetInfo free before/peak/after $(mib "$fb") / $(mib "$fp") / $(mib "$fa"); last $last${reasons:+; FAILED: $reasons}"
    ((${#why[@]} == 0)) || attach "alloc_apis fill $api" "$out"
    if [[ $pb =~ ^[0-9]+$ && $pp =~ ^[0-9]+$ ]]; then
      phys=$(((pp - pb) * MIB))
      phys_rows+="| $api | $(mib "$filled") | $(mib "$charged") | $(mib "$phys") |"$'\n'
      # The driver may round up a little (alignment, page tables); more than 2% + 4 MiB beyond
      # what gpufrac charged means a tenant can use more of the card than its limit.
      le "$phys" "$(calc "$charged * 1.02 + 4 * $MIB")" || phys_bad+=" $api"
    fi
  done
  if [[ -n $phys_rows ]]; then
    if [[ -z $phys_bad ]]; then
      check "physical use <= charged" PASS "for every API, nvidia-smi's memory.used grew by no more than gpufrac charged (+2% +4 MiB); table in the notes"
    else
      check "physical use <= charged" FAIL "the driver used more than gpufrac charged for:$phys_bad (table in the notes)"
    fi
    note ""
    note "Per-API use at the peak of each fill (physical: nvidia-smi memory.used outside the interposer):"
    note ""
    note "| API | requested | charged (cuMemGetInfo free drop) | physical (memory.used rise) |"
    note "| --- | --- | --- | --- |"
    note "${phys_rows%$'\n'}"
    note ""
  else
    check "physical use <= charged" SKIP "nvidia-smi memory.used could not be read from inside the tenant"
  fi
fi

# --- a pool destroyed with memory outstanding ---------------------------------------------------

if ((COMPILED)); then
  # What gpufrac's accounting of a draining pool assumes of the driver, read without gpufrac.
  out=$WORK/pool-facts.out
  "$GPU_BIN/pool_drain" facts >"$out" 2>&1
  rc=$?
  facts=$(tr '\n' ' ' <"$out")
  fact() { kv_get "$facts" "$1"; }
  why=()
  ((rc == 0)) || why+=("exit $rc")
  [[ -n $(fact used) && $(fact used) == "$(fact queried)" ]] ||
    why+=("the pointers' sizes add up to $(fact queried), USED_MEM_CURRENT says $(fact used)")
  [[ $(fact owner_is_pool) == 1 ]] ||
    why+=("MEMPOOL_HANDLE does not name the destroyed pool (result $(fact owner_result))")
  [[ $(fact used_with_queued_free) == "$(fact used_after_it_ran)" ]] ||
    why+=("a queued cuMemFreeAsync still counts in USED_MEM_CURRENT")
  # Three allocations outlive the destruction: the memory comes back at the third free only.
  if [[ -n $(fact free_after_2) ]]; then
    within 0.1 "$(fact free_after_2)" "$(fact start_free)" || why+=("the last free did not give the memory back")
    le "$(fact free_after_1)" "$(calc "$(fact start_free) - 32 * $MIB")" || why+=("memory came back before the last free")
  fi
  [[ $(fact mem_free_result) == 0 ]] || why+=("cuMemFree of pool memory returned $(fact mem_free_result)")
  [[ -n $(fact free_after_mem_free) ]] &&
    { le "$(calc "$(fact free_before_mem_free) + 64 * $MIB")" "$(fact free_after_mem_free)" ||
      why+=("cuMemFree of a destroyed pool's last allocation released nothing"); }
  # gpufrac credits a draining pool whose handle value comes back from cuMemPoolCreate: that is
  # safe only if the driver never hands the value out while the pool still holds memory.
  [[ $(fact same_handle_while_draining) == 0 ]] ||
    why+=("a new pool got a draining pool's handle (gpufrac would credit the old one early)")
  if ((${#why[@]} == 0)); then verdict=PASS; else verdict=FAIL; fi
  reasons=$(IFS=';' && echo "${why[*]}")
  check "pool drain: driver facts" $verdict "requested $(fact requested), USED_MEM_CURRENT $(fact used), pointer sizes $(fact queried); after destroy: owner_is_pool $(fact owner_is_pool), size $(fact size_after_destroy), new allocation result $(fact reuse_result); a new pool got the draining handle: $(fact same_handle_while_draining)${reasons:+; FAILED: $reasons}"
  note ""
  note "pool_drain facts: $facts"
  ((${#why[@]} == 0)) || attach "pool_drain facts" "$out"

  # Under gpufrac: the destroyed pool's 1 GiB stays charged until freed, then comes back. Needs a
  # context under 1 GiB (3 GiB must fit in 4 GiB less the context).
  out=$WORK/pool-tenant.out
  grun --memory 4GiB -- "$GPU_BIN/pool_drain" tenant 1024 1024 3072 >"$out" 2>&1
  rc=$?
  line=$(grep "^start_free=" "$out")
  got() { kv_get "$line" "$1"; }
  why=()
  if [[ -z $line ]]; then
    why+=("no result (exit $rc)")
  else
    le "$(got destroyed_free)" "$(calc "$(got start_free) - 1024 * $MIB")" ||
      why+=("the held 1 GiB was credited at the destruction")
    le "$(calc "$(got start_free) - 1088 * $MIB")" "$(got destroyed_free)" ||
      why+=("the cache was not credited at the destruction")
    [[ $(got over_held_result) == 2 ]] || why+=("3 GiB was not refused while held ($(got over_held_result))")
    # The last free queued behind a running kernel: the driver still holds the memory, so it must
    # stay charged (stream_busy=0 means the kernel ended too soon for the check to mean anything).
    [[ $(got stream_busy) == 1 ]] || why+=("the kernel ended before the queued-free check")
    [[ $(got over_queued_result) == 2 ]] ||
      why+=("3 GiB was not refused while the last free was still queued ($(got over_queued_result))")
    within 0.1 "$(got freed_free)" "$(got start_free)" || why+=("not credited after the last free")
    [[ $(got over_freed_result) == 0 ]] || why+=("3 GiB refused after the free ($(got over_freed_result))")
  fi
  if ((${#why[@]} == 0)); then verdict=PASS; else verdict=FAIL; fi
  reasons=$(IFS=';' && echo "${why[*]}")
  check "pool drain under --memory 4GiB" $verdict "cuMemGetInfo free: start $(mib "$(got start_free)"), pool of 2 GiB $(mib "$(got pooled_free)"), destroyed with 1 GiB held $(mib "$(got destroyed_free)"), its free queued behind a kernel $(mib "$(got queued_free)"), after it ran $(mib "$(got freed_free)"); cuMemAlloc 3 GiB while held: $(got over_held_result), while the free was queued: $(got over_queued_result), after: $(got over_freed_result)${reasons:+; FAILED: $reasons}"
  ((${#why[@]} == 0)) || attach "pool_drain tenant" "$out"
fi

# --- launch overhead -----------------------------------------------------------------------------

if ((COMPILED)); then
  plain=""
  managed=""
  ok=1
  # Interleaved, so drift in clocks or load affects both sides alike.
  for i in $(seq "$REPEATS"); do
    out=$("$GPU_BIN/launch_overhead" "$LAUNCHES" 1000 2>&1) || ok=0
    plain+=" $(kv_get "$out" ns_per_launch)"
    out=$(grun --fraction 0.5 -- "$GPU_BIN/launch_overhead" "$LAUNCHES" 1000 2>&1) || ok=0
    managed+=" $(kv_get "$out" ns_per_launch)"
    ((ok)) || {
      note "- launch_overhead run $i failed: $out"
      break
    }
  done
  m_plain=$(median <<<"$plain")
  m_managed=$(median <<<"$managed")
  if ((ok)) && [[ -n $m_plain && -n $m_managed ]]; then
    added=$(awk -v a="$m_managed" -v b="$m_plain" 'BEGIN { printf "%.1f", a - b }')
    if le "$added" "$LAUNCH_BUDGET_NS"; then verdict=PASS; else verdict=FAIL; fi
    check "launch overhead" $verdict "cuLaunchKernel x $LAUNCHES (sync every 1000), median of $REPEATS: plain $m_plain ns, under gpufrac $m_managed ns, added $added ns per launch (budget $LAUNCH_BUDGET_NS ns); runs plain:$plain; gpufrac:$managed"
  else
    check "launch overhead" FAIL "a run failed (see notes); plain:$plain; gpufrac:$managed"
  fi
fi

exit 0
