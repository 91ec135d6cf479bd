#!/usr/bin/env python3
"""A plain HF transformers loop scoring MMLU, to measure `sqlora mmlu` against (speed and bf16 logliks).

The same prompts and requests as sqlora and lm-evaluation-harness (mmlu_common.py): where every
continuation is one token (Qwen's " A".." D"), one forward pass per question, batched: questions
sorted by length (longest first), left-padded, position_ids = cumsum(mask) - 1, logits of the last
position only (logits_to_keep=1), log_softmax, the four letters' log-probabilities. Timing covers
the scoring loop (tokenization excluded, as in sqlora's scoring_seconds), with a CUDA sync at the end.

  python3 tools/reference/mmlu_hf.py --model DIR --data MMLU_DIR [--shots 0|5] [--dtype bf16|f32]
      [--quantize none|nf4] [--adapter DIR] [--batch-size N | --token-budget N] [--limit N] --out hf.json

Writes {"seconds", "questions_per_s", "device", "dtype", "questions": [{"subject", "index", "loglik": [4]}]}
in sqlora's result order. tools/mmlu/bench.ts runs this and sqlora in one call and reports the ratio.
"""
import argparse
import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mmlu_common import LETTERS, context, encode_pair, model_input, read_mmlu, select  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--quantize", choices=["none", "nf4"], default="none")
    ap.add_argument("--batch-size", type=int, default=0, help="0: by --token-budget")
    ap.add_argument("--token-budget", type=int, default=32768)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    dev_name = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    kw = {"dtype": dtype, "attn_implementation": "sdpa"}
    if args.quantize == "nf4":
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        kw["device_map"] = {"": 0}
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, **kw)
    if args.quantize != "nf4":
        model.to(dev_name)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    model.eval()
    max_length = model.config.max_position_embeddings

    test, dev = read_mmlu(args.data)
    items = select(test, dev, args.shots, limit=args.limit)
    prepared = []
    for order, (q, shots) in enumerate(items):
        ctx = context(q, shots)
        pairs = [encode_pair(tok, ctx, " " + l) for l in LETTERS]
        if any(len(c) != 1 for _, c in pairs):
            sys.exit("mmlu_hf.py: a continuation is not one token; this loop times the one-pass case only")
        prepared.append((order, model_input(pairs[0][0], pairs[0][1], max_length), [c[0] for _, c in pairs]))
    prepared.sort(key=lambda p: -len(p[1]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    results = [None] * len(prepared)

    if dev_name == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    i = 0
    with torch.inference_mode():
        while i < len(prepared):
            longest = len(prepared[i][1])
            n = args.batch_size or max(1, min(64, args.token_budget // longest))
            batch = prepared[i : i + n]
            ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for b, (_, inp, _) in enumerate(batch):
                ids[b, longest - len(inp) :] = torch.tensor(inp)
                mask[b, longest - len(inp) :] = 1
            ids, mask = ids.to(dev_name), mask.to(dev_name)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1, :]
            logp = torch.log_softmax(logits.float(), dim=-1)
            targets = torch.tensor([t for _, _, t in batch], device=dev_name)
            picked = logp.gather(1, targets).cpu()
            for b, (order, _, _) in enumerate(batch):
                results[order] = picked[b].tolist()
            i += len(batch)
    if dev_name == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    out = {
        "seconds": seconds,
        "questions_per_s": len(items) / seconds,
        "device": torch.cuda.get_device_name() if dev_name == "cuda" else "cpu",
        "dtype": args.dtype,
        "quantize": args.quantize,
        "shots": args.shots,
        "questions": [{"subject": q["subject"], "index": q["index"], "loglik": results[k]} for k, (q, _) in enumerate(items)],
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"HF: {len(items)} questions in {seconds:.1f} s ({len(items) / seconds:.1f} questions/s) on {out['device']}")


if __name__ == "__main__":
    main()
