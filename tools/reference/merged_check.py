#!/usr/bin/env python3
"""Checks a folder written by `sqlora export --to merged` in HF transformers against PEFT.

The merged folder must load with AutoModelForCausalLM.from_pretrained as is (config.json,
safetensors shards + index when sharded, tokenizer files when the base had them), and its
logits must equal PEFT's base + adapter on the same inputs: within 1e-5 (max abs) when the
folder is f32. For bf16/f16 folders the tolerance is the storage rounding (reported, checked
against 5e-2). Writes the HF logits of the merged model and the measured differences to OUT
(a safetensors file), the fixture a sqlora test can compare its own merged model with.

Run where torch, transformers and peft are installed (the GPU host; CPU works too):

    npx tsx src/cli/main.ts export --model test/fixtures/tiny/gqa/model \
        --adapter test/fixtures/tiny/gqa/adapter --to merged --dtype f32 --out /tmp/merged-gqa
    python3 tools/reference/merged_check.py /tmp/merged-gqa test/fixtures/tiny/gqa/model \
        test/fixtures/tiny/gqa/adapter test/fixtures/export/merged_gqa_logits.safetensors

Usage: python3 tools/reference/merged_check.py MERGED_DIR BASE_DIR ADAPTER_DIR OUT.safetensors
"""
import json
import os
import sys

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def inputs(vocab):
    # Two rows, the second left-padded: positions and masks as generate() builds them.
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def main(merged_dir, base_dir, adapter_dir, out):
    with open(os.path.join(merged_dir, "config.json")) as f:
        config = json.load(f)
    stored = config.get("torch_dtype") or config.get("dtype")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
    adapted = PeftModel.from_pretrained(base, adapter_dir).eval()
    if os.path.exists(os.path.join(base_dir, "tokenizer.json")):
        tok = transformers.AutoTokenizer.from_pretrained(merged_dir)
        if tok.chat_template:
            tok.apply_chat_template([{"role": "user", "content": "How many singers are there?"}], tokenize=False, add_generation_prompt=True)
    ids, mask, pos = inputs(merged.config.vocab_size)
    with torch.no_grad():
        m = merged(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        p = adapted(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        adapted.disable_adapter_layers()
        b = adapted(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    keep = mask.bool()
    diff = (m - p).abs()[keep].max().item()
    moved = (p - b).abs()[keep].max().item()
    tol = 1e-5 if stored in (None, "float32") else 5e-2
    print(f"merged vs PEFT base+adapter: max |diff| {diff:.3g} (tolerance {tol:g}, stored {stored}); the adapter moves logits by {moved:.3g}")
    save_file(
        {"input_ids": ids.int().contiguous(), "attention_mask": mask.int().contiguous(), "position_ids": pos.int().contiguous(), "logits": m.contiguous()},
        out,
        metadata={"max_abs_diff_vs_peft": repr(diff), "stored_dtype": str(stored), "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    )
    if moved < 1e-3:
        sys.exit("merged_check.py: the adapter does not change the logits; the check would prove nothing")
    if diff > tol:
        sys.exit(f"merged_check.py: FAILED, merged logits differ from PEFT's by {diff:.3g} > {tol:g}")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
