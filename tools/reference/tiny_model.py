#!/usr/bin/env python3
"""Reference values for sqlora's Qwen2 forward/backward and PEFT I/O, from HF transformers + PEFT.

Builds two tiny random Qwen2 models in f32 (CPU is enough) and records, for a padded batch of
prompts of different lengths (right-padded and left-padded):
  - logits of the base model and of the model with a PEFT LoRA on all seven projections
    (lora_B set to random non-zero values so the adapter matters),
  - the causal-LM loss with completion-only labels (-100 on padding and on a prompt prefix)
    and the gradient of every lora_A / lora_B,
  - greedy generation (tokens and per-step logits) from the left-padded prompts,
and saves the model (save_pretrained, safetensors) and the adapter (PEFT save_pretrained).

Variants:
  gqa   hidden 64, 2 layers, 4 heads / 2 kv heads, head_dim 16, untied lm_head, LoRA r=8 alpha=16
  tied  the same sizes with 4 kv heads (no GQA) and tied embeddings (like Qwen1.5), rsLoRA

Layout of --out (a few hundred KB in total):
  <variant>/model/            config.json, generation_config.json, model.safetensors
  <variant>/adapter/          adapter_config.json, adapter_model.safetensors
  <variant>/reference.safetensors
  <variant>/meta.json         versions, sizes, LoRA settings, loss values, tensor index
  manifest.json               variants and library versions

Positions: every forward passes position_ids = cumsum(attention_mask) - 1 (padding slots: 1),
which is what generate() uses; a plain forward() would number left-padded tokens from the
first padding slot instead.

Usage: python3 tools/reference/tiny_model.py --out OUT_DIR
Needs torch, transformers (5.x), peft, safetensors. Fails loudly on any inconsistency.
"""
import argparse
import json
import os
import sys

import torch
import transformers
import peft
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

VOCAB = 384
PAD_ID = 0
PROMPT_LENGTHS = [12, 9, 6, 3]
NEW_TOKENS = 6
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

VARIANTS = {
    "gqa": dict(num_key_value_heads=2, tie_word_embeddings=False, use_rslora=False),
    "tied": dict(num_key_value_heads=4, tie_word_embeddings=True, use_rslora=True),
}


def fail(msg):
    print(f"tiny_model.py: {msg}", file=sys.stderr)
    sys.exit(1)


def make_config(kv_heads, tied):
    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        head_dim=16,
        hidden_act="silu",
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        use_sliding_window=False,
        attention_dropout=0.0,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=PAD_ID,
        attn_implementation="eager",
    )
    try:
        config = Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    except TypeError:  # transformers 4.x
        config = Qwen2Config(**common, rope_theta=10000.0)
    return config


def randomize(model, gen):
    """Weights of size O(1) so logits and gradients are far from zero (HF's init is 0.02-scaled)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / (p.shape[-1] ** 0.5))


def check_model(model, config, tied):
    inv = model.model.rotary_emb.inv_freq.float()
    want = 1.0 / (10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
    if not torch.allclose(inv, want, rtol=1e-6, atol=0):
        fail(f"rotary inv_freq is {inv.tolist()}, expected theta 10000 ({want.tolist()})")
    attn = model.model.layers[0].self_attn
    for proj in ("q_proj", "k_proj", "v_proj"):
        if getattr(attn, proj).bias is None:
            fail(f"{proj} has no bias; Qwen2 attention must have q/k/v biases")
    if attn.o_proj.bias is not None:
        fail("o_proj has a bias; Qwen2's has none")
    same = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if same != tied:
        fail(f"lm_head tied to embed_tokens is {same}, expected {tied}")


def make_batch(gen, lengths, side):
    B, T = len(lengths), max(lengths)
    seqs = [torch.randint(1, VOCAB, (n,), generator=gen) for n in lengths]
    ids = torch.full((B, T), PAD_ID, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s)
        if side == "right":
            ids[b, :n], mask[b, :n] = s, 1
        else:
            ids[b, T - n:], mask[b, T - n:] = s, 1
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    return seqs, ids, mask, pos


def completion_labels(ids, mask):
    """Completion-only labels: -100 on padding and on the first half of each sequence's tokens."""
    labels = ids.clone()
    labels[mask == 0] = -100
    for b in range(ids.shape[0]):
        real = mask[b].nonzero().flatten()
        labels[b, real[: len(real) // 2]] = -100
    return labels


def forward_logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()


def greedy(model, ids, mask):
    gen_cfg = transformers.GenerationConfig(
        max_new_tokens=NEW_TOKENS, do_sample=False,
        pad_token_id=PAD_ID, eos_token_id=None, bos_token_id=None,
    )
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg,
                             output_scores=True, output_logits=True, return_dict_in_generate=True)
    steps = out.logits if getattr(out, "logits", None) is not None else out.scores
    if len(steps) != NEW_TOKENS:
        fail(f"generate returned {len(steps)} steps, expected {NEW_TOKENS}")
    return out.sequences, torch.stack([s.float() for s in steps])


def run_variant(name, spec, out_dir, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = make_config(spec["num_key_value_heads"], spec["tie_word_embeddings"])
    model = Qwen2ForCausalLM(config).float().eval()
    randomize(model, gen)
    check_model(model, config, spec["tie_word_embeddings"])
    vdir = os.path.join(out_dir, name)
    model.save_pretrained(os.path.join(vdir, "model"))  # safetensors (the only format in transformers 5)

    ref = {}
    batches = {}
    for side in ("right", "left"):
        gen_b = torch.Generator().manual_seed(seed + 1)  # same sequences on both sides
        seqs, ids, mask, pos = make_batch(gen_b, PROMPT_LENGTHS, side)
        labels = completion_labels(ids, mask)
        batches[side] = (ids, mask, pos, labels)
        ref[f"{side}.input_ids"] = ids.to(torch.int32)
        ref[f"{side}.attention_mask"] = mask.to(torch.int32)
        ref[f"{side}.position_ids"] = pos.to(torch.int32)
        ref[f"{side}.labels"] = labels.to(torch.int32)
        ref[f"{side}.logits"] = forward_logits(model, ids, mask, pos)
    # Padding must not change real tokens' logits (a sanity check of the reference itself).
    r, l = ref["right.logits"], ref["left.logits"]
    for b, n in enumerate(PROMPT_LENGTHS):
        T = max(PROMPT_LENGTHS)
        if not torch.allclose(r[b, :n], l[b, T - n:], atol=1e-4, rtol=0):
            fail(f"{name}: left- and right-padded logits differ for row {b}")
    seq, scores = greedy(model, batches["left"][0], batches["left"][1])
    ref["generate.sequences"] = seq.to(torch.int32)
    ref["generate.logits"] = scores

    lora_cfg = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, bias="none",
        use_rslora=spec["use_rslora"], task_type="CAUSAL_LM",
    )
    pm = get_peft_model(model, lora_cfg)
    with torch.no_grad():
        for pname, p in pm.named_parameters():
            if "lora_B" in pname:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    pm.eval()
    for side in ("right", "left"):
        ids, mask, pos, labels = batches[side]
        ref[f"{side}.lora_logits"] = forward_logits(pm, ids, mask, pos)
    if torch.allclose(ref["right.lora_logits"], ref["right.logits"], atol=1e-3):
        fail(f"{name}: the LoRA adapter does not change the logits")

    losses = {}
    for side in ("right", "left"):
        ids, mask, pos, labels = batches[side]
        pm.zero_grad(set_to_none=True)
        loss = pm(input_ids=ids, attention_mask=mask, position_ids=pos, labels=labels).loss
        loss.backward()
        losses[side] = loss.item()
        ref[f"{side}.loss"] = loss.detach().float().reshape(1)
        if side == "right":
            grads = {}
            for pname, p in pm.named_parameters():
                if "lora_" in pname:
                    if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().max() == 0:
                        fail(f"{name}: gradient of {pname} is missing, zero or not finite")
                    # PEFT's saved name: drop the adapter name ("default").
                    grads["grad." + pname.replace(".default", "")] = p.grad.detach().float().clone()
            expected = 2 * len(TARGETS) * config.num_hidden_layers
            if len(grads) != expected:
                fail(f"{name}: found {len(grads)} LoRA gradients, expected {expected}")
            ref.update(grads)

    adapter_dir = os.path.join(vdir, "adapter")
    pm.save_pretrained(adapter_dir)  # PEFT writes adapter_model.safetensors by default
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    missing = [g[len("grad."):] for g in ref if g.startswith("grad.") and g[len("grad."):] not in saved]
    if missing:
        fail(f"{name}: gradient names do not match the saved adapter's tensor names, e.g. {missing[0]} not in {sorted(saved)[:3]}")
    seq_l, scores_l = greedy(pm, batches["left"][0], batches["left"][1])
    ref["generate.lora_sequences"] = seq_l.to(torch.int32)
    ref["generate.lora_logits"] = scores_l

    # The saved adapter must reload to the same logits (checks the files we will read).
    base = Qwen2ForCausalLM.from_pretrained(os.path.join(vdir, "model"), dtype=torch.float32, attn_implementation="eager").eval()
    reloaded = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids, mask, pos, _ = batches["right"]
    again = forward_logits(reloaded, ids, mask, pos)
    if not torch.allclose(again, ref["right.lora_logits"], atol=1e-5, rtol=0):
        fail(f"{name}: reloaded model + adapter gives different logits")

    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(vdir, "reference.safetensors"), metadata={"format": "pt"})
    meta = {
        "variant": name,
        "seed": seed,
        "prompt_lengths": PROMPT_LENGTHS,
        "pad_token_id": PAD_ID,
        "new_tokens": NEW_TOKENS,
        "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": TARGETS, "use_rslora": spec["use_rslora"]},
        "loss": losses,
        "tensors": {k: list(v.shape) for k, v in sorted(ref.items())},
    }
    with open(os.path.join(vdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"{name}: loss right {losses['right']:.6f} left {losses['left']:.6f}, {len(ref)} reference tensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for i, (name, spec) in enumerate(VARIANTS.items()):
        run_variant(name, spec, args.out, seed=1000 + i)
    manifest = {
        "variants": list(VARIANTS),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
