#!/usr/bin/env python3
"""Reference per-step training numbers for sqlora's SFT loop, from plain PyTorch + PEFT.

Reads a parity input written by tools/fixtures/make-train-parity.ts: token sequences with
labels (-100 = no loss), hyperparameters, and the exact micro-batches of every optimizer step.
Loads the tiny base model in f32 on the CPU with the initial LoRA adapter (trainable), then for
each step, as HF's Trainer does with gradient accumulation:
  - every micro-batch is right-padded (pad id from the input, attention mask 0, labels -100);
  - the loss is the summed token cross-entropy (labels shifted inside, as the causal LM does)
    divided by the number of target tokens over all micro-batches of the step
    (num_items_in_batch), and backpropagated;
  - gradients are clipped with torch.nn.utils.clip_grad_norm_ (the norm before clipping is
    recorded), torch.optim.AdamW steps (weight decay on every LoRA weight: HF excludes only
    biases and norm weights), then the LR scheduler (transformers'
    get_cosine_schedule_with_warmup, warmup = ceil(warmup_ratio * total_steps)).
Writes OUT/expected.json: versions, per-step loss / lr (the rate the step used) / grad_norm,
and per LoRA tensor of the final adapter its L2 norm, sum and first 8 values; and the final
adapter itself in OUT/final-adapter/ (PEFT save_pretrained).

With --device cuda --dtype bfloat16 --attn sdpa (tools/gpu-check/parity-1p8b.sh) the base model
is bf16 on the GPU and every step runs under torch.autocast(bfloat16), as mixed-precision
training does (LoRA weights and AdamW state stay float32). An input with a "probe" (token ids
and positions) also gets, before training, the probe's logits at those positions in
OUT/probe-logits.bin (float32, positions x vocabulary) and its loss in expected.json; with a
bf16 base, also the same from an f32 copy of the base (probe-logits-f32.bin, loss_f32), which
measures how far bf16 itself moves the logits.

Usage (from the repository root):
  python3 tools/reference/train_reference.py test/fixtures/train/parity-input.json OUT_DIR
Model and adapter paths inside the input are relative to the repository root (the current
directory) or absolute. Needs torch, transformers (5.x), peft. By default CPU, f32 and
deterministic; a few seconds for the tiny fixture.
"""
import contextlib
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import transformers
import peft
from peft import PeftModel
from transformers import Qwen2ForCausalLM, get_cosine_schedule_with_warmup


def fail(msg):
    print(f"train_reference.py: {msg}", file=sys.stderr)
    sys.exit(1)


def micro_batch(examples, indices, pad_id):
    rows = [examples[i] for i in indices]
    T = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = torch.tensor(r["input_ids"])
        mask[b, :n] = 1
        labels[b, :n] = torch.tensor(r["labels"])
    return ids, mask, labels


def target_count(labels):
    return int((labels[:, 1:] != -100).sum().item())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="parity-input.json")
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="the base model's dtype (bfloat16: steps under autocast)")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager", help="attention implementation")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if dtype == torch.bfloat16 else contextlib.nullcontext
    with open(args.input) as f:
        spec = json.load(f)
    h = spec["hyperparameters"]
    examples = spec["examples"]
    steps = spec["steps"]
    if len(steps) != h["total_steps"]:
        fail(f"{len(steps)} steps listed, total_steps is {h['total_steps']}")

    base = Qwen2ForCausalLM.from_pretrained(spec["model"], dtype=dtype, attn_implementation=args.attn).to(device)
    model = PeftModel.from_pretrained(base, spec["init_adapter"], is_trainable=True)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.float32)  # master weights in f32 whatever the base dtype
    model.train()
    os.makedirs(args.out, exist_ok=True)
    probe = None
    if "probe" in spec:
        ids = torch.tensor([spec["probe"]["ids"]], device=device)
        with torch.no_grad(), autocast():
            logits = model(input_ids=ids).logits.float()[0]
        positions = spec["probe"]["positions"]
        logits[positions].cpu().numpy().astype("<f4").tofile(os.path.join(args.out, "probe-logits.bin"))
        loss = F.cross_entropy(logits[:-1], ids[0, 1:]).item()
        probe = {"loss": loss, "positions": positions, "vocab": logits.shape[-1]}
        print(f"probe: loss {loss:.6f}, logits of {len(positions)} positions written")
        if dtype != torch.float32:
            # bf16's own error, the yardstick for sqlora's: the same probe through an f32 copy of the
            # base (the initial adapter's B is zero, so the base alone gives the same logits).
            f32 = Qwen2ForCausalLM.from_pretrained(spec["model"], dtype=torch.float32, attn_implementation=args.attn).to(device)
            with torch.no_grad():
                exact = f32(input_ids=ids).logits.float()[0]
            exact[positions].cpu().numpy().astype("<f4").tofile(os.path.join(args.out, "probe-logits-f32.bin"))
            probe["loss_f32"] = F.cross_entropy(exact[:-1], ids[0, 1:]).item()
            del f32, exact
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(f"probe: f32 loss {probe['loss_f32']:.6f}, logits written")
    cfg = model.peft_config["default"]
    if cfg.lora_dropout != h["lora"]["lora_dropout"] or cfg.r != h["lora"]["r"] or cfg.lora_alpha != h["lora"]["lora_alpha"]:
        fail(f"adapter config {cfg} does not match the input's LoRA settings {h['lora']}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named or any("lora_" not in n for n, _ in named):
        fail(f"trainable parameters should be exactly the LoRA factors, got {[n for n, _ in named][:4]}")
    no_decay = [p for n, p in named if n.endswith("bias") or "norm" in n.lower()]
    decay = [p for n, p in named if not (n.endswith("bias") or "norm" in n.lower())]
    params = [p for _, p in named]
    groups = [{"params": decay, "weight_decay": h["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=h["lr"], betas=(h["adam_beta1"], h["adam_beta2"]), eps=h["adam_epsilon"], foreach=False,
    )
    warmup = math.ceil(h["warmup_ratio"] * h["total_steps"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=h["total_steps"])

    records = []
    for s, micro in enumerate(steps):
        batches = [tuple(t.to(device) for t in micro_batch(examples, mb, h["pad_id"])) for mb in micro]
        n_items = sum(target_count(lab) for _, _, lab in batches)
        step_loss = 0.0
        for ids, mask, labels in batches:
            with autocast():
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            loss = F.cross_entropy(
                logits[:, :-1, :].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                ignore_index=-100, reduction="sum",
            ) / n_items
            loss.backward()
            step_loss += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, h["max_grad_norm"]).item()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(step_loss):
            fail(f"loss is {step_loss} at step {s + 1}")
        records.append({"step": s + 1, "loss": step_loss, "lr": lr, "grad_norm": grad_norm, "target_tokens": n_items})
        print(f"step {s + 1}: loss {step_loss:.6f} lr {lr:.6g} grad_norm {grad_norm:.6f}")

    adapter_dir = os.path.join(args.out, "final-adapter")
    model.save_pretrained(adapter_dir, safe_serialization=True)
    final = {}
    for n, p in named:
        name = n.replace(".default", "")
        v = p.detach().float().flatten()
        final[name] = {"shape": list(p.shape), "norm": v.norm().item(), "sum": v.sum().item(), "first": v[:8].tolist()}
    out = {
        "input": os.path.relpath(args.input),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "warmup_steps": warmup,
        "steps": records,
        "final_lora": final,
        **({"probe": probe} if probe else {}),
    }
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {os.path.join(args.out, 'expected.json')} ({len(records)} steps, {len(final)} LoRA tensors)")


if __name__ == "__main__":
    main()
