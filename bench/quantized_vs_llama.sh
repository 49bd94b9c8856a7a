#!/usr/bin/env bash
# Quantized sampling at batch 1 side by side with llama.cpp's server on the same GGUF, alternating:
# ours (`sampling.quantized = true`, `sampling.batch_size = 1`), the server at concurrency 1, and
# our f32 and quantized samplers at batch 16 for scale. Each sampler draws 4 GSM8K questions x 4
# samples, 128 new tokens at most, temperature 0.7, top-p 0.95, into a fresh cache.
# Usage: bench/quantized_vs_llama.sh [TRAINER] [REPS]
#   TRAINER  default ./target/release/trainer; REPS default 2.
# Needs ../shared (the SmolLM2 GGUF) and llama-cpp-python[server] in ~/.cache/trainer-llama-venv
# (or LLAMA_CPP_PYTHON); .ci/run installs it there.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAINER="${1:-./target/release/trainer}"
REPS="${2:-2}"
PYTHON="${LLAMA_CPP_PYTHON:-${HOME}/.cache/trainer-llama-venv/bin/python}"
MODEL=../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf
PORT=18433
WORK="$(mktemp -d)"
OMP_WAIT_POLICY=PASSIVE "$PYTHON" -m llama_cpp.server --host 127.0.0.1 --port "$PORT" \
  --model "$MODEL" --model_alias smollm2 --n_threads 2 >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models')" \
    2>/dev/null && break
  sleep 1
done
COMMON=(--config configs/smollm2-gsm8k.toml --set data.limit=4 --set sampling.n=4
  --set sampling.max_new_tokens=128 --set sampling.temperature=0.7 --set sampling.top_p=0.95)
SERVER_SET=(--set 'sampling.backend="openai"' --set "sampling.openai.base_url=\"http://127.0.0.1:$PORT/v1\""
  --set sampling.openai.params.top_k=0 --set sampling.openai.params.min_p=0.0
  --set sampling.openai.params.repeat_penalty=1.0 --set sampling.openai.concurrency=1)
echo "rep sampler: what the sample stage logged"
for rep in $(seq "$REPS"); do
  for mode in quantized-b1 llama-server f32-b16 quantized-b16; do
    case $mode in
      quantized-b1) extra=(--set sampling.quantized=true --set sampling.batch_size=1) ;;
      llama-server) extra=("${SERVER_SET[@]}") ;;
      f32-b16) extra=(--set sampling.batch_size=16) ;;
      quantized-b16) extra=(--set sampling.quantized=true --set sampling.batch_size=16) ;;
    esac
    dir="$WORK/$rep-$mode"
    RUST_LOG=info "$TRAINER" sample "${COMMON[@]}" "${extra[@]}" \
      --set "run.cache=\"$dir/cache\"" --out "$dir/run" >"$dir.log" 2>&1
    echo "$rep $mode: $(grep -o 'sampled [0-9]* completions.*' "$dir.log" | tail -1)"
  done
done
rm -rf "$WORK"
