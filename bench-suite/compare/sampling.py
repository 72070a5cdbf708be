#!/usr/bin/env python3
"""Sampling throughput: tilt's GPT-2 sampler (flex, criterion bench) vs transformers' generate.

Same config (GPT-2 small shape: 12 layers, 768, 12 heads, vocab 50257, random weights),
batch 32, prompt = one <|endoftext|> token per row, exactly 40 new tokens, ancestral sampling
(top_k=0, top_p=1, temperature 1), KV cache on both sides, same machine, same run.

Usage (from the repository root; reference venv from policies/tests/fixtures/requirements.txt):
    /work/venv-ref/bin/python bench-suite/compare/sampling.py [--skip-rust] [--quick]

Default: the Rust side runs the criterion bench (10 samples) and the mean is read from
target/criterion; transformers runs 1 warm-up + REPEATS (env, default 3) timed calls.
--quick: both sides time REPEATS calls directly without warm-up (the bench binary's
TILT_SAMPLING_ONCE mode), for busy or slow machines.

Prints new tokens/s for both, the ratio tilt / transformers, and the peak resident memory of
each process (ru_maxrss).
"""
import json
import os
import resource
import subprocess
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

BATCH, NEW_TOKENS, EOS = 32, 40, 50256
REPEATS = int(os.environ.get("REPEATS", "3"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rust_tokens_per_s_quick():
    build = ["cargo", "bench", "-p", "tilt-bench", "--bench", "sampling", "--no-run", "--message-format=json"]
    out = subprocess.run(build, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    exe = [json.loads(l)["executable"] for l in out.splitlines()
           if '"executable":"' in l and json.loads(l).get("target", {}).get("name") == "sampling"][0]
    env = dict(os.environ, TILT_SAMPLING_ONCE=str(REPEATS))
    lines = subprocess.run([exe], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    secs = [float(l.split("seconds=")[1].split()[0]) for l in lines.splitlines() if l.startswith("tilt-sampling")]
    mean = sum(secs) / len(secs)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return BATCH * NEW_TOKENS / mean, mean, peak_kib


def rust_tokens_per_s():
    cmd = ["cargo", "bench", "-p", "tilt-bench", "--bench", "sampling", "--", "flex/sample/gpt2-small-b32-t40"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    est = os.path.join(target, "criterion", "flex_sample", "gpt2-small-b32-t40", "new", "estimates.json")
    with open(est) as f:
        mean_ns = json.load(f)["mean"]["point_estimate"]
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return BATCH * NEW_TOKENS / (mean_ns * 1e-9), mean_ns * 1e-9, peak_kib


def torch_tokens_per_s():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # GPT-2 small shape, random init
    ids = torch.full((BATCH, 1), EOS, dtype=torch.long)
    mask = torch.ones_like(ids)
    # Fixed length as in the paper: no EOS stopping criterion (eos_token_id=None) instead of
    # min_new_tokens, which would change the distribution by masking EOS. pad_token_id is
    # never used (nothing stops) but must differ from the prompt token to avoid a warning.
    kwargs = dict(
        attention_mask=mask, do_sample=True, max_new_tokens=NEW_TOKENS, eos_token_id=None,
        top_k=0, top_p=1.0, temperature=1.0, pad_token_id=0, use_cache=True,
    )
    with torch.inference_mode():
        if "--quick" not in sys.argv:
            model.generate(ids, **kwargs)  # warm-up
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            out = model.generate(ids, **kwargs)
            times.append(time.perf_counter() - t0)
    assert out.shape == (BATCH, 1 + NEW_TOKENS), out.shape
    mean = sum(times) / len(times)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return BATCH * NEW_TOKENS / mean, mean, peak_kib


def main():
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    if "--skip-rust" in sys.argv:
        rust = None
    elif "--quick" in sys.argv:
        rust = rust_tokens_per_s_quick()
    else:
        rust = rust_tokens_per_s()
    hf = torch_tokens_per_s()
    print(f"transformers generate: {hf[0]:8.1f} new tokens/s ({hf[1]:.3f} s per batch, peak RSS {hf[2] / 1024:.0f} MiB)")
    if rust:
        print(f"tilt (flex):           {rust[0]:8.1f} new tokens/s ({rust[1]:.3f} s per batch, peak RSS {rust[2] / 1024:.0f} MiB)")
        print(f"ratio tilt / transformers: {rust[0] / hf[0]:.2f}x")


if __name__ == "__main__":
    main()
