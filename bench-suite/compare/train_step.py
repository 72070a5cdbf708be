#!/usr/bin/env python3
"""Full training-step throughput: tilt's GDC++ step vs naver/disco's DPGTuner step (GDC++).

The same work on both sides, on the same random GPT-2 configuration (GPT-2 small shape: 12 layers,
768, 12 heads, vocab 50257, random weights), batch and length: draw BATCH sequences of NEW_TOKENS
from the proposal q (ancestral sampling from one <|endoftext|> token, KV cache), score them under
the base model a (no gradient) and a pointwise feature (b(x) = [first token mod 4 != 3]), update
the running Z, score them under the policy pi with the GDC++ loss (DPG with the baseline Z pi/q:
disco's KLLoss(use_baseline=True), DPGTuner's loss) and its backward pass, and take one Adam step. disco runs it as
DPGTuner._step() (one gradient step of its tune() loop, with its own bookkeeping: Z, divergence
estimates), tilt as `cargo run --example train_step` (tilt_bench::TrainStep).

Rounds alternate (tilt, disco, tilt, disco, ...) so both see the same machine load, and each side
runs in a fresh process of its own: one untimed step, then STEPS timed ones. The parent process
only orchestrates (it does not import torch), so neither side runs beside the other's resident
memory. (An earlier version kept one disco tuner alive in the parent across rounds: tilt then ran
beside about 4 GB of disco's resident memory, and on this project's virtual machine its page faults
took twice the system time: tilt's step measured 22-24 s that way against 17-19 s alone, while
disco's warm process did not pay for it.) Both use every core (rayon / torch intra-op threads).

Usage, from the repository root, with the environment of setup.sh:
    ~/.local/share/tilt/venv-compare/bin/python bench-suite/compare/train_step.py \
        [--batch 32] [--new-tokens 40] [--rounds 3] [--steps 1]

Prints seconds per step and samples per second for both, tilt's breakdown (sample, target,
policy, optimizer), and the ratio tilt/disco of the medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# The models are local directories: never ask the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "policies", "assets", "gpt2-tokenizer")


def tilt_example():
    build = ["cargo", "build", "--release", "-p", "tilt-bench", "--example", "train_step",
             "--message-format=json"]
    out = subprocess.run(build, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("target", {}).get("name") == "train_step" and msg.get("executable"):
            return msg["executable"]
    sys.exit("cargo did not report the train_step example's executable")


def run_child(cmd):
    """Runs `cmd` in ROOT and returns its stdout; on failure, exits with its stderr's tail."""
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def parse_rows(stdout, prefix):
    """The `key=value` fields of every line starting with `prefix`, as floats."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith(prefix + " "):
            rows.append({k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])})
    return rows


def tilt_round(exe, batch, new_tokens, steps):
    """One process: an untimed step, then `steps` timed ones; returns their breakdowns."""
    out = run_child([exe, "gpt2-small", str(batch), str(new_tokens), str(steps + 1)])
    return parse_rows(out, "tilt-train-step")[1:]


def disco_round(model_dir, batch, new_tokens, steps):
    """One process (`--disco-worker`): an untimed step, then `steps` timed ones."""
    cmd = [sys.executable, os.path.abspath(__file__), "--disco-worker", model_dir,
           "--batch", str(batch), "--new-tokens", str(new_tokens), "--steps", str(steps)]
    out = run_child(cmd)
    versions = [line for line in out.splitlines() if line.startswith("versions ")]
    return [row["seconds"] for row in parse_rows(out, "disco-train-step")], versions[-1][9:]


def disco_tuner(batch, new_tokens, model_dir):
    from disco.distributions import LMDistribution
    from disco.scorers import BooleanScorer
    from disco.tuners import DPGTuner

    base = LMDistribution(network=model_dir, tokenizer=model_dir, length=new_tokens, device="cpu")
    model = LMDistribution(network=model_dir, tokenizer=model_dir, length=new_tokens, device="cpu",
                           freeze=False)
    proposal = LMDistribution(network=model_dir, tokenizer=model_dir, length=new_tokens, device="cpu")
    feature = BooleanScorer(lambda x, context: int(x.token_ids[0]) % 4 != 3)
    target = base * feature
    # disco 1.0.0's DPGTuner always uses KLLoss(), whose use_baseline defaults to True: GDC++.
    return DPGTuner(model, target, proposal=proposal,
                    n_gradient_steps=1, n_samples_per_step=batch, scoring_size=batch,
                    sampling_size=batch, divergence_evaluation_interval=10**9,
                    learning_rate=1.41e-5, warmup_steps=0)


def disco_worker(model_dir, batch, new_tokens, steps):
    """Runs in its own process: builds the tuner, one untimed step, then `steps` timed ones."""
    import time

    import torch
    import transformers

    tuner = disco_tuner(batch, new_tokens, model_dir)
    for i in range(steps + 1):
        start = time.perf_counter()
        tuner._step()
        seconds = time.perf_counter() - start
        if i > 0:
            print(f"disco-train-step seconds={seconds:.3f}", flush=True)
    print(f"versions torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} torch threads", flush=True)


def save_random_gpt2(directory):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    GPT2LMHeadModel(config).save_pretrained(directory)
    GPT2TokenizerFast(vocab_file=os.path.join(TOKENIZER, "vocab.json"),
                      merges_file=os.path.join(TOKENIZER, "merges.txt")).save_pretrained(directory)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1, help="timed steps per round and side")
    ap.add_argument("--disco-worker", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    ap.add_argument("--save-model", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.save_model:
        save_random_gpt2(args.save_model)
        return
    if args.disco_worker:
        disco_worker(args.disco_worker, args.batch, args.new_tokens, args.steps)
        return

    exe = tilt_example()
    tilt, tilt_parts, peer, versions = [], [], [], ""
    with tempfile.TemporaryDirectory() as model_dir:
        # Fails early without the environment of setup.sh (no disco, torch or transformers).
        run_child([sys.executable, "-c", "import disco"])
        run_child([sys.executable, os.path.abspath(__file__), "--save-model", model_dir])
        for r in range(args.rounds):
            rows = tilt_round(exe, args.batch, args.new_tokens, args.steps)
            tilt += [row["seconds"] for row in rows]
            tilt_parts += rows
            seconds, versions = disco_round(model_dir, args.batch, args.new_tokens, args.steps)
            peer += seconds
            print(f"round {r + 1}: tilt {statistics.median(tilt[-args.steps:]):.2f} s/step, "
                  f"disco {statistics.median(peer[-args.steps:]):.2f} s/step", flush=True)
    t, d = statistics.median(tilt), statistics.median(peer)
    parts = {k: statistics.median(row[k] for row in tilt_parts)
             for k in ("sample", "target", "policy", "optimizer")}
    print(f"GPT-2 small (random), batch {args.batch} x {args.new_tokens} new tokens, GDC++ step, "
          f"{args.rounds} alternating rounds x {args.steps} steps, each in a fresh process "
          f"({versions})")
    print(f"tilt : {t:.2f} s/step = {args.batch / t:.2f} samples/s "
          f"(sample {parts['sample']:.2f}, target {parts['target']:.2f}, "
          f"policy {parts['policy']:.2f}, optimizer {parts['optimizer']:.2f})")
    print(f"disco: {d:.2f} s/step = {args.batch / d:.2f} samples/s")
    print(f"ratio tilt/disco (throughput): {d / t:.2f}x")


if __name__ == "__main__":
    main()
