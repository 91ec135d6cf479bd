#!/usr/bin/env python3
"""The HF transformers + PEFT side of sqlora's benchmark (bench/bench.ts runs it; it also runs alone).

Model: a Qwen2 decoder with random weights, either of a named shape
  1.8b  Qwen1.5-1.8B: hidden 2048, 24 layers, 16 heads (16 kv heads), intermediate 5504,
        vocab 151936, untied embeddings, q/k/v biases
  tiny  hidden 128, 2 layers, 4 heads, intermediate 352, vocab 2048 (a smoke test)
initialized by transformers (seed --seed) in bf16, or loaded from --model DIR (bf16).

Modes:
  --save-model DIR  write the random model (config.json + bf16 safetensors, save_pretrained) so
                    sqlora can load the very same weights, then exit.
  --mode train      LoRA r=16 alpha=32 dropout 0.05 on q,k,v,o (PEFT defaults otherwise: LoRA
                    weights in f32), bf16 base, autocast to bf16 (HF Trainer's bf16=True), sdpa
                    attention, labels = input ids (every position trained), per step:
                    forward, backward, clip_grad_norm_(1.0), fused AdamW (lr 2e-4, weight decay
                    0.01; Trainer's default optim with torch >= 2.8), zero_grad. --warmup
                    untimed steps, then --steps timed ones on one fixed random batch of
                    --batch x --seq tokens.
  --mode generate   greedy decoding with model.generate (KV cache, bf16, no adapter): prompts of
                    ~--prompt-len random tokens (or --prompts FILE, a JSON list of id lists),
                    sorted longest first, left-padded, in batches of --gen-batch, exactly
                    --new-tokens new tokens each (min_new_tokens = max_new_tokens). One untimed
                    warm-up batch first.

Reported (JSON to --out, one line summary on stdout): tokens/s (training: batch*seq tokens per
second; generation: new tokens per second over all prompts, prefill included), peak memory as
torch.cuda.max_memory_allocated (tensors only, not the allocator's cache), and for training the
estimated MFU, with the formula bench/bench.ts uses for both sides:
  FLOPs/token = 4*N + 6*N_lora + 12*L*T*H*hd
  N      weights of every matmul (7 projections per layer + lm_head; the embedding is a lookup):
         2N forward, 2N for activation gradients in backward, no weight gradients (frozen)
  N_lora LoRA A and B weights: forward 2, backward 4 (activation and weight gradients)
  12*L*T*H*hd  attention scores and values, forward + backward, not halved for causality
               (PaLM's convention; T = sequence length)
  MFU = tokens/s * FLOPs/token / 989e12 (H100 SXM dense bf16 peak; the H200 has the same).

Usage:
  python3 tools/reference/bench_hf.py --shape 1.8b --save-model /tmp/qwen-1.8b-random
  python3 tools/reference/bench_hf.py --model /tmp/qwen-1.8b-random --mode train --batch 16 --seq 512 --out hf.json
  python3 tools/reference/bench_hf.py --shape 1.8b --mode generate --out hf-gen.json
Needs torch (CUDA), transformers 5.x, peft. No network.
"""
import argparse
import json
import os
import random
import shutil
import sys
import time

import torch
import transformers
import peft
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

PEAK_FLOPS = 989e12
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]

SHAPES = {
    "1.8b": dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16, vocab_size=151936, max_position_embeddings=32768),
    "tiny": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=2048, max_position_embeddings=4096),
}
ROPE_THETA = 1000000.0


def fail(msg):
    print(f"bench_hf.py: {msg}", file=sys.stderr)
    sys.exit(1)


def make_config(shape):
    common = dict(**SHAPES[shape], hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                  use_sliding_window=False, attention_dropout=0.0, bos_token_id=None, eos_token_id=None,
                  pad_token_id=0, attn_implementation="sdpa")
    try:
        return Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA})
    except TypeError:  # transformers 4.x
        return Qwen2Config(**common, rope_theta=ROPE_THETA)


def load_model(args, device):
    if args.model:
        model = Qwen2ForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, attn_implementation="sdpa")
        return model.to(device)
    config = make_config(args.shape)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    return model.to(torch.bfloat16)


def shape_of(config):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return dict(hidden=config.hidden_size, layers=config.num_hidden_layers, heads=config.num_attention_heads,
                kv_heads=config.num_key_value_heads, head_dim=head_dim, intermediate=config.intermediate_size,
                vocab=config.vocab_size, tied=bool(config.tie_word_embeddings))


def train_flops_per_token(s, seq, r):
    q, kv, d = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"], s["hidden"]
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * s["intermediate"]
    n = s["layers"] * per_layer + s["vocab"] * d
    n_lora = s["layers"] * r * ((d + q) + 2 * (d + kv) + (q + d))
    return 4 * n + 6 * n_lora + 12 * s["layers"] * seq * q, n, n_lora


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, None


def run_train(model, args, device):
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=LORA_TARGETS, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        fail("no trainable parameters after get_peft_model")
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=device.type == "cuda")
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=gen).to(device)
    losses = []
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 0 or step == args.warmup + args.steps - 1:
            losses.append(out.loss.item())
    sync(device)
    elapsed = time.perf_counter() - start
    tokens = args.batch * args.seq * args.steps
    return dict(tokens=tokens, seconds=elapsed, tokens_per_s=tokens / elapsed, step_ms=1000 * elapsed / args.steps,
                loss_first=losses[0], loss_last=losses[-1], trainable_params=sum(p.numel() for p in params))


def make_prompts(args, vocab):
    if args.prompts:
        with open(args.prompts) as f:
            prompts = json.load(f)
        if not isinstance(prompts, list) or not all(isinstance(p, list) and p for p in prompts):
            fail(f"{args.prompts}: expected a JSON list of non-empty lists of token ids")
        return prompts
    rng = random.Random(args.seed)
    spread = max(1, args.prompt_len // 10)
    lengths = [rng.randint(args.prompt_len - spread, args.prompt_len + spread) for _ in range(args.num_prompts)]
    return [[rng.randrange(1, vocab) for _ in range(n)] for n in lengths]


def generate_batch(model, rows, new_tokens, device):
    T = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, T - len(r):] = torch.tensor(r)
        mask[b, T - len(r):] = 1
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    made = out.shape[1] - T
    if made != new_tokens:
        fail(f"generate made {made} new tokens per row, expected {new_tokens}")
    return len(rows) * made


def run_generate(model, args, device):
    model.eval()
    prompts = make_prompts(args, model.config.vocab_size)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    batches = [[prompts[i] for i in order[s:s + args.gen_batch]] for s in range(0, len(order), args.gen_batch)]
    with torch.inference_mode():
        generate_batch(model, batches[0], min(args.new_tokens, 8), device)
        sync(device)
        start = time.perf_counter()
        made = sum(generate_batch(model, b, args.new_tokens, device) for b in batches)
        sync(device)
    elapsed = time.perf_counter() - start
    return dict(prompts=len(prompts), prompt_tokens=sum(len(p) for p in prompts), new_tokens=made, seconds=elapsed,
                tokens_per_s=made / elapsed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.8b")
    ap.add_argument("--model", help="load this checkpoint folder instead of random weights of --shape")
    ap.add_argument("--save-model", metavar="DIR", help="write the random model of --shape to DIR and exit")
    ap.add_argument("--mode", choices=["train", "generate"], default="train")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--prompts", help="JSON file: a list of prompts, each a list of token ids")
    ap.add_argument("--num-prompts", type=int, default=200)
    ap.add_argument("--prompt-len", type=int, default=110)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0:
        fail("--steps must be at least 1 and --warmup at least 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch sees no GPU")

    model = load_model(args, device)
    if args.save_model:
        # Written beside and renamed, so an interrupted save never leaves a folder that looks complete.
        tmp = args.save_model.rstrip("/") + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        os.replace(tmp, args.save_model)
        print(f"wrote {args.save_model} ({sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters, bf16)")
        return
    shape = shape_of(model.config)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.mode == "train":
        result = run_train(model, args, device)
        flops, n, n_lora = train_flops_per_token(shape, args.seq, args.lora_r)
        result.update(flops_per_token=flops, matmul_params=n, lora_params=n_lora,
                      mfu=result["tokens_per_s"] * flops / PEAK_FLOPS, batch=args.batch, seq=args.seq,
                      steps=args.steps, warmup=args.warmup)
    else:
        result = run_generate(model, args, device)
        result.update(gen_batch=args.gen_batch, new_tokens_per_prompt=args.new_tokens)
    peak, reserved = peak_bytes(device)
    result.update(
        tool="hf", mode=args.mode, shape=shape, model=args.model or f"random {args.shape}",
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        peak_bytes=peak, reserved_bytes=reserved,
        versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__),
    )
    summary = f"{args.mode}: {result['tokens_per_s']:.1f} tokens/s, peak {peak / 2**30:.2f} GiB"
    if "mfu" in result:
        summary += f", MFU {100 * result['mfu']:.1f}%"
    print(summary)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
