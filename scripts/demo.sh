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
  sim_cleanup="rm -f /dev/shm/gpufrac-sim.demo-$$ /dev/shm/gpufrac.$uuid.*"
fi
serve_dir=$(mktemp -d)
serve_pids=()
cleanup() {
  for pid in "${serve_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$serve_dir"
  eval "${sim_cleanup:-true}"
}
trap cleanup EXIT

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

echo "== serving: gpufrac node owns the GPU, gpufrac serve runs models on fractions of it"
echo "   (examples/serve/quickstart.yaml: chat on 0.25 of a GPU, 1-4 replicas, TTFT p95 SLA 300 ms)"
export PATH="$PWD/$build/bin:$PATH"  # the example's replicas are gpufrac-synth-server
"$gpufrac" node --socket "$serve_dir/node.sock" --state "$serve_dir/node.db" \
  > "$serve_dir/node.out" 2> "$serve_dir/node.log" &
serve_pids+=($!)
for _ in $(seq 200); do [ -S "$serve_dir/node.sock" ] && break; sleep 0.05; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$gpufrac" serve examples/serve/quickstart.yaml --node "$serve_dir/node.sock" \
  --listen "127.0.0.1:$port" 2> "$serve_dir/serve.log" &
serve_pids=($! "${serve_pids[@]}")  # serve stops first: it deletes its replicas through the agent
for _ in $(seq 200); do
  grep -q 'event=replica.ready model=chat' "$serve_dir/serve.log" 2>/dev/null && break
  sleep 0.05
done
echo "\$ curl -s 127.0.0.1:$port/health"
curl -s "127.0.0.1:$port/health"
echo
echo "== 24 users hit the chat model for 8 s: the autoscaler adds replicas, no request fails"
show "$gpufrac" bench --url "http://127.0.0.1:$port" --model chat --concurrency 24 \
  --duration 8s --ramp-up 2s --output-tokens-mean 32 --no-progress
echo "== the autoscaler's decisions, with the figures behind them"
grep -E 'event=(autoscaler.decision|replica.ready)' "$serve_dir/serve.log" | sed 's/^ts=[^ ]* //'
echo
echo "== done: see docs/runtime.md for how it works, docs/serve.md for serving"
