#!/usr/bin/env bash
# Data-parallel scaling of `tilt train` from 1 to 2 peers on this machine, one compute thread
# per peer (RAYON_NUM_THREADS=1): samples per second of the training steps, from metrics.jsonl
# (elapsed time between the step-0 and the last evaluation, both kept small).
#
#   bench-suite/compare/scaling.sh [STEPS]        (default 8 steps of 128 samples)
#
# Runs, all on the embedded demo (tilt-mini, GDC++), each with the same 2 sample streams, so
# all three train on the same samples:
#   1 peer       one process, one thread;
#   2 processes  two nodes on loopback (burn-collective's multi-node path), one thread each;
#   2 threads    two peers in one process (--devices 2), sharing a rayon pool of 2 threads.
# Prints a table and writes it to runs/scaling/table.md. Timings are not tests: rerun it and
# compare ratios measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-8}"
out=runs/scaling
rm -rf "$out" && mkdir -p "$out"
cargo build --release -q -p tilt-trainer
tilt=target/release/tilt

# The demo's config and model, with small evaluations and no intermediate checkpoint.
"$tilt" train --output-dir "$out/demo" --dry-run > /dev/null
sed -e "s/^total_samples = .*/total_samples = $((steps * 128))/" \
    -e 's/^samples = 256 .*/samples = 32/' -e 's/^proposal_samples = .*/proposal_samples = 32/' \
    -e 's/^self_bleu_samples = .*/self_bleu_samples = 16/' \
    -e "s/^interval = 15/interval = $steps/" \
    -e 's/^samples = 1024/samples = 128/' \
    -e 's|^base = "tilt-mini"|base = "demo/tilt-mini"|' \
    "$out/demo/demo.toml" > "$out/scaling.toml"

rate() { # samples/s of a run directory's training steps
  python3 - "$1" "$steps" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
first, last = rows[0], rows[-1]
print(f"{(last['samples_seen'] - first['samples_seen']) / (last['elapsed_s'] - first['elapsed_s']):.2f}")
EOF
}

RAYON_NUM_THREADS=1 "$tilt" train -c "$out/scaling.toml" -o "$out/one" --sample-streams 2 > /dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(port)
"$tilt" coordinator --port "$cport" > /dev/null 2>&1 &
coordinator=$!
trap 'kill $coordinator 2>/dev/null || true' EXIT
for rank in 0 1; do
  RAYON_NUM_THREADS=1 "$tilt" train -c "$out/scaling.toml" -o "$out/nodes" --nodes 2 \
    --node-rank $rank --coordinator "127.0.0.1:$cport" --node-address "127.0.0.1:$(port)" \
    > /dev/null 2> "$out/node-$rank.err" &
  pids[rank]=$!
done
wait "${pids[0]}" "${pids[1]}"

RAYON_NUM_THREADS=2 "$tilt" train -c "$out/scaling.toml" -o "$out/threads" --devices 2 > /dev/null

one=$(rate "$out/one"); nodes=$(rate "$out/nodes"); threads=$(rate "$out/threads")
{
  echo "| topology | samples/s | speed-up | efficiency |"
  echo "|---|---|---|---|"
  echo "| 1 peer, 1 thread | $one | 1.00× | 100% |"
  python3 - "$one" "$nodes" "$threads" <<'EOF'
import sys
one, nodes, threads = map(float, sys.argv[1:])
for name, r in [("2 processes (loopback), 1 thread each", nodes), ("2 peers in 1 process, 2 threads", threads)]:
    print(f"| {name} | {r:.2f} | {r / one:.2f}× | {100 * r / one / 2:.0f}% |")
EOF
} | tee "$out/table.md"
