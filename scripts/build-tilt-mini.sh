#!/usr/bin/env bash
# Rebuilds the demo base model tilt-mini from scratch: corpora -> token caches -> `tilt pretrain`
# with the committed recipe (trainer/assets/tilt-mini/pretrain.toml) and the committed, embedded
# tokenizer (trainer/assets/tilt-mini/tokenizer.json; DATA.md gives the command that retrains it
# byte-identically).
#
# Usage: scripts/build-tilt-mini.sh [OUT]        (default OUT: ./tilt-mini-build)
# Environment:
#   BACKEND   flex (default, CPU), tch, cuda, wgpu, ndarray: the cargo feature built and the
#             --backend passed. tch needs libtorch: `source` the env file of
#             scripts/setup-libtorch.sh first (build and run against the same torch).
#   DEVICE    --device: cuda:0 for tch on a GPU (tch defaults to the CPU), cuda:N for cuda
#             (default cuda:0), gpu:N for wgpu; empty: the backend's default.
#   CORPORA   corpus directory (default ~/.cache/tilt/corpora; filled by fetch-corpora.sh).
#   TILT      a prebuilt `tilt` binary with the backend compiled in (skips the cargo build).
#   CARGO_TARGET_DIR  as usual.
#
# On a machine without the repository, the binary alone is enough: copy it with the two token
# caches this script writes (CORPORA/tilt-mini-tokens/{train,valid}.tokens) and run the final
# command printed below; every input is on its command line and the tokenizer is compiled in.
#
# Output: OUT/config.json, OUT/model-0000{1,2}-of-00002.safetensors (each < 16 MiB) +
# OUT/model.safetensors.index.json, OUT/tokenizer.json (Hugging Face layout: tilt and
# transformers load it), OUT/pretrain.jsonl (loss, lr, grad norm, tokens/s, validation
# loss/perplexity), OUT/pretrain.toml (the config used).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
out="${1:-tilt-mini-build}"
backend="${BACKEND:-flex}"
device="${DEVICE:-}"
corpora="${CORPORA:-$HOME/.cache/tilt/corpora}"
tokens="$corpora/tilt-mini-tokens"

log() { printf '==> %s\n' "$*" >&2; }

# 1. Corpora (idempotent; pinned sha256s; about 2 minutes the first time).
if [[ ! -s "$corpora/train.txt" || ! -s "$corpora/valid.txt" ]]; then
  log "fetching corpora into $corpora"
  "$repo/scripts/fetch-corpora.sh" "$corpora"
fi

# 2. The binary.
if [[ -n "${TILT:-}" ]]; then
  tilt="$TILT"
else
  log "building tilt with --features $backend"
  features=(--no-default-features --features "$backend")
  (cd "$repo" && cargo build --release -p tilt-trainer "${features[@]}")
  tilt="${CARGO_TARGET_DIR:-$repo/target}/release/tilt"
fi

# 3. Token caches (the embedded tokenizer; a few seconds).
log "encoding the corpora into $tokens"
"$tilt" pretrain --train "$corpora/train.txt" --valid "$corpora/valid.txt" --save-tokens "$tokens"

# 4. Pretraining.
device_args=()
[[ -n "$device" ]] && device_args=(--device "$device")
cmd=("$tilt" -v pretrain --config "$repo/trainer/assets/tilt-mini/pretrain.toml"
  --train-tokens "$tokens/train.tokens" --valid-tokens "$tokens/valid.tokens"
  --output "$out" --backend "$backend" "${device_args[@]}")
log "running: ${cmd[*]}"
"${cmd[@]}"
log "done: $out"
