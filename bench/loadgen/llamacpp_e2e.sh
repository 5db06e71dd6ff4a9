#!/usr/bin/env bash
# End to end against a real LLM server on the CPU: llama-cpp-python's OpenAI-compatible server
# with a tiny random-weight GGUF this script generates, benchmarked by gpufrac bench (streaming
# completions and chat). Needs `scripts/setup-python.sh --llama`. Usage: llamacpp_e2e.sh BUILD_DIR
# The server runs with --interrupt_requests False: by default a new request cuts the stream in
# progress (gpufrac bench then reports connection_closed errors, as it should).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
py=$root/.venv/bin/python
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$py" "$root/bench/loadgen/make_tiny_gguf.py" "$work/tiny.gguf"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$py" -m llama_cpp.server --model "$work/tiny.gguf" --host 127.0.0.1 --port "$port" \
  --n_ctx 512 --n_threads 1 --model_alias tiny --interrupt_requests False \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done

check() {  # endpoint
  "$build/bin/gpufrac" bench --url "http://127.0.0.1:$port" --model tiny --endpoint "$1" \
    --concurrency 2 --requests 6 --warmup-requests 1 --input-tokens-mean 16 \
    --output-tokens-mean 8 --timeout 60s --output-dir "$work/$1" --no-progress >"$work/$1.txt"
  "$py" - "$work/$1/summary.json" "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["metrics"]
assert s["requests"]["ok"] == 6 and s["requests"]["failed"] == 0, s["requests"]
assert m["time_to_first_token_ms"]["count"] == 6 and m["time_to_first_token_ms"]["min"] > 0
assert m["request_latency_ms"]["min"] >= m["time_to_first_token_ms"]["min"]
# llama-cpp-python ignores stream_options.include_usage: the report must say so and count events.
assert s["requests_without_usage"] == 6 and s["output_token_source"] == "content events", s
print(f"llama.cpp {sys.argv[2]}: ok 6, TTFT p50 {m['time_to_first_token_ms']['p50']:.2f} ms, "
      f"output tokens avg {m['output_sequence_length']['avg']:.1f} ({s['output_token_source']}), "
      f"{s['output_token_throughput']:.0f} tok/s")
PY
}
check completions
check chat
