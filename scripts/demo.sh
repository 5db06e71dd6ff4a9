#!/usr/bin/env bash
# gpufrac in one minute. Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
gpufrac="$build/bin/gpufrac"
probe="$build/tests/cuda_probe"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "== real GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
else
  echo "== no GPU here: using gpufrac's simulated driver (one H100 with 80 GiB)"
  export LD_LIBRARY_PATH="$PWD/$build/lib/sim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export GPUFRAC_SIM_ID="demo-$$" GPUFRAC_SIM_GPUS="${GPUFRAC_SIM_GPUS:-H100:80GiB}"
  uuid=$("$gpufrac" run --memory 1MiB -- sh -c 'echo $CUDA_VISIBLE_DEVICES')
  trap 'rm -f /dev/shm/gpufrac-sim.demo-$$ /dev/shm/gpufrac.$uuid.*' EXIT
fi

show() { echo "\$ $*"; "$@"; echo; }

echo "== what a workload sees without gpufrac"
show "$probe" info
echo "== the same program on a 0.5 fraction: half the card is its whole card"
show "$gpufrac" run --fraction 0.5 --tenant chat -- "$probe" info
echo "== two tenants at 0.5 fill their halves concurrently; neither passes its limit"
barrier=$(mktemp -u)
"$gpufrac" run --fraction 0.5 --tenant chat -- "$probe" fill alloc 1GiB "$barrier" > /tmp/gpufrac-demo-a.$$ &
a=$!
"$gpufrac" run --fraction 0.5 --tenant embed -- "$probe" fill alloc 1GiB "$barrier" > /tmp/gpufrac-demo-b.$$ &
b=$!
for _ in $(seq 500); do
  grep -q filled /tmp/gpufrac-demo-a.$$ 2>/dev/null && grep -q filled /tmp/gpufrac-demo-b.$$ 2>/dev/null && break
  sleep 0.02
done
echo "chat:  $(cat /tmp/gpufrac-demo-a.$$)"
echo "embed: $(cat /tmp/gpufrac-demo-b.$$)"
echo
echo "== a third tenant does not fit while both run"
echo "\$ $gpufrac run --fraction 0.25 -- true"
"$gpufrac" run --fraction 0.25 -- true && echo "unexpectedly admitted" || echo "(refused, exit code $?)"
touch "$barrier"
wait "$a" "$b"
rm -f "$barrier" /tmp/gpufrac-demo-a.$$ /tmp/gpufrac-demo-b.$$
echo
echo "== done: see docs/runtime.md for how it works"
