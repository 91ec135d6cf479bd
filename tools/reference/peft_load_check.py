#!/usr/bin/env python3
"""Loads an adapter written by sqlora with PEFT and records PEFT's logits for the HF tiny batch.

The other half of the PEFT round trip (tiny_model.py checks PEFT -> sqlora): the adapter in
test/fixtures/sqlora-adapter/adapter/ comes from sqlora's writer (make_sqlora_adapter.ts);
PeftModel.from_pretrained must accept it as is, and the logits it gives on the right- and
left-padded batches of test/fixtures/tiny/gqa/reference.safetensors are written to OUT, which
test/lora-sqlora-adapter.test.ts compares with sqlora's.

Usage: python3 tools/reference/peft_load_check.py OUT.safetensors
"""
import os
import sys

import peft
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import Qwen2ForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(out):
    base = Qwen2ForCausalLM.from_pretrained(os.path.join(REPO, "test/fixtures/tiny/gqa/model"), torch_dtype=torch.float32, attn_implementation="eager").eval()
    model = PeftModel.from_pretrained(base, os.path.join(REPO, "test/fixtures/sqlora-adapter/adapter")).eval()
    cfg = model.peft_config["default"]
    if cfg.r != 4 or cfg.lora_alpha != 12 or not cfg.use_rslora or sorted(cfg.target_modules) != ["down_proj", "gate_proj", "q_proj", "v_proj"]:
        sys.exit(f"peft_load_check.py: unexpected config {cfg}")
    ref = load_file(os.path.join(REPO, "test/fixtures/tiny/gqa/reference.safetensors"))
    tensors = {}
    with torch.no_grad():
        for side in ("right", "left"):
            ids = ref[f"{side}.input_ids"].long()
            mask = ref[f"{side}.attention_mask"].long()
            pos = ref[f"{side}.position_ids"].long()
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
            base_logits = ref[f"{side}.logits"]
            moved = (logits - base_logits).abs().max().item()
            if moved < 1e-3:
                sys.exit(f"peft_load_check.py: the adapter does not change the {side} logits (max change {moved})")
            tensors[f"{side}.logits"] = logits.contiguous()
    save_file(tensors, out, metadata={"peft": peft.__version__, "torch": torch.__version__})
    print(f"wrote {out}: PEFT {peft.__version__} loaded sqlora's adapter")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
