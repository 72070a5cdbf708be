#!/usr/bin/env python3
"""One GDC++ training step in PyTorch/transformers: the work of tilt's `TrainStep`, on any device.

The same work as `tilt_bench::TrainStep` (tilt-bench's `train_step` example and tilt-tests' `throughput`),
on a random GPT-2-small-shaped model (12 layers, 768, 12 heads, vocabulary 50,257, dropout off),
three copies of the same weights: q (proposal), a (base) and pi (trained). Each step:

- sample: BATCH sequences of exactly NEW_TOKENS from q with transformers' `generate` (ancestral:
  top_k=0, top_p=1, temperature 1; KV cache; one <|endoftext|> prompt token; no stop at
  <|endoftext|>, as tilt's fixed-length sampling), log q from the returned scores;
- target: log a of the samples (no gradient), the pointwise feature b(x) = [first new token mod
  4 != 3], the running Z = mean of P/q over every sample so far;
- policy: log pi of the samples, GDC++'s loss -(1/n) sum_i A_i log pi(x_i) with
  A_i = P/(Z q) - pi/q (detached) and its backward pass;
- optimizer: one Adam step on pi (lr 1.41e-5).

Each part ends with a device synchronisation, so its time is its own. One untimed step first,
then STEPS timed ones, one line each:
    torch-train-step seconds=<total> sample=<s> target=<s> policy=<s> optimizer=<s> loss=<l>

Usage:
    python bench-suite/compare/torch_step.py [--device cuda] [--batch 32] [--new-tokens 40]
        [--steps 3] [--tf32] [--threads N]
--tf32 allows TF32 in f32 matrix products (`torch.set_float32_matmul_precision("high")`; PyTorch's
default is full f32). CubeCL's CUDA matmul uses TF32 on sm_80 and later, so a GPU comparison
reports both. Needs torch and transformers only (no disco): scripts/gpu-check.sh runs it on a GPU
machine whose Python has both.
"""
import argparse
import math
import os
import time

# Random weights only: never ask the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

EOS = 50256


def gpt2_small(device):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).to(device)


def sequence_log_probs(model, ids):
    """Sum of log p(x_t | x_<t) over the new tokens (positions 1..), as logit - logsumexp."""
    logits = model(input_ids=ids).logits[:, :-1].float()
    picked = logits.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (picked - torch.logsumexp(logits, dim=-1)).sum(-1)


class Step:
    def __init__(self, device, batch, new_tokens):
        self.device = device
        self.new_tokens = new_tokens
        self.base = gpt2_small(device).eval()
        self.proposal = gpt2_small(device).eval()
        self.policy = gpt2_small(device).train()
        for m in (self.base, self.proposal):
            m.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=1.41e-5)
        self.prompt = torch.full((batch, 1), EOS, dtype=torch.long, device=device)
        self.log_weights = []
        torch.manual_seed(1)  # the samples (generate draws from the global generator)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def sample(self):
        with torch.no_grad():
            out = self.proposal.generate(
                input_ids=self.prompt, attention_mask=torch.ones_like(self.prompt),
                do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                max_new_tokens=self.new_tokens, min_new_tokens=0, eos_token_id=None,
                pad_token_id=EOS, output_scores=True, return_dict_in_generate=True)
            new = out.sequences[:, 1:]
            scores = torch.stack(out.scores, dim=1).float()
            log_q = (scores.gather(-1, new[:, :, None]).squeeze(-1)
                     - torch.logsumexp(scores, dim=-1)).sum(-1)
        return out.sequences, log_q

    def step(self):
        self.sync()
        t0 = time.perf_counter()
        ids, log_q = self.sample()
        self.sync()
        t1 = time.perf_counter()
        with torch.no_grad():
            log_a = sequence_log_probs(self.base, ids)
            allowed = (ids[:, 1] % 4) != 3
            log_target = torch.where(allowed, log_a, torch.full_like(log_a, -math.inf))
            self.log_weights.append((log_target - log_q).double().cpu())
            w = torch.cat(self.log_weights)
            log_z = (torch.logsumexp(w, 0) - math.log(len(w))).item()
        t2 = time.perf_counter()
        log_pi = sequence_log_probs(self.policy, ids)
        with torch.no_grad():
            advantage = torch.exp(log_target - log_q - log_z) - torch.exp(log_pi - log_q)
        loss = -(advantage * log_pi).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync()
        t3 = time.perf_counter()
        self.optimizer.step()
        self.sync()
        t4 = time.perf_counter()
        return {"seconds": t4 - t0, "sample": t1 - t0, "target": t2 - t1, "policy": t3 - t2,
                "optimizer": t4 - t3, "loss": loss.item()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--steps", type=int, default=3, help="timed steps, after one untimed")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in f32 matrix products")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    import transformers
    print(f"torch-backend torch {torch.__version__} transformers {transformers.__version__} "
          f"device {device} ({name}) tf32 {args.tf32} threads {torch.get_num_threads()}",
          flush=True)
    step = Step(device, args.batch, args.new_tokens)
    step.step()  # untimed: allocator, kernels, cuBLAS heuristics
    for _ in range(args.steps):
        r = step.step()
        print("torch-train-step " + " ".join(
            f"{k}={v:.4e}" if k == "loss" else f"{k}={v:.4f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
