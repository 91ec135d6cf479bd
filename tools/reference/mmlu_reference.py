#!/usr/bin/env python3
"""Reference MMLU log-likelihoods from HF transformers + PEFT, for sqlora's `mmlu` scorer.

On the tiny models of test/fixtures/mmlu/ (f32, CPU is enough), with lm-evaluation-harness's
mmlu semantics (see mmlu_common.py), records the log-likelihood of each of the four
continuations " A".." D" for:
  - 0-shot: all 250 test questions of test/fixtures/mmlu/csv (50 per subject, 5 subjects),
  - 5-shot: the first 8 test questions of each subject (40),
for model-letters (" A".." D" single tokens) and model-bytes (" B".." D" two tokens), each as the
base model and with the PEFT adapter test/fixtures/mmlu/adapter (PeftModel.from_pretrained).

Every request is scored on its own as the harness's HFLM._loglikelihood_tokens does for a
decoder-only model: one unpadded forward over the model input, log_softmax over the vocabulary,
the continuation tokens' log-probabilities summed (float64 sum of float32 values). The harness
itself is not imported (its API for building requests changes between versions); where
`lm_eval` is installed, --check-harness also runs its HFLM.loglikelihood on the same requests
and fails on any difference above 1e-5.

Writes OUT (default test/fixtures/mmlu/reference.json):
  {"versions": {...}, "sets": {"0shot": [{"subject", "index", "context_sha256", ...}], "5shot": [...]},
   "logliks": {"letters": {"base": {"0shot": [[4] per question], "5shot": [...]}, "adapter": {...}},
               "bytes": {...}},
   "prompts": {"0shot": [first 3 contexts verbatim], "5shot": [first 2]}}

Usage: python3 tools/reference/mmlu_reference.py [--out FILE] [--check-harness]
Needs torch, transformers (5.x), peft. Then: npx tsx tools/mmlu/check-reference.ts FILE
"""
import argparse
import hashlib
import json
import os
import sys

import torch
import transformers
import peft
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mmlu_common import LETTERS, context, encode_pair, model_input, read_mmlu, select  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "test", "fixtures", "mmlu")


def loglik(model, ids, cont):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    n = len(cont)
    picked = logp[len(ids) - n : len(ids)].gather(1, torch.tensor(cont).unsqueeze(1)).squeeze(1)
    return float(picked.double().sum())


def score(model, tok, items, max_length):
    out = []
    for q, shots in items:
        ctx = context(q, shots)
        row = []
        for letter in LETTERS:
            ctx_ids, cont_ids = encode_pair(tok, ctx, " " + letter)
            row.append(loglik(model, model_input(ctx_ids, cont_ids, max_length), cont_ids))
        out.append(row)
    return out


def check_harness(model, tok, items, expected):
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        print("lm_eval is not installed: --check-harness skipped", file=sys.stderr)
        return
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1)
    reqs = []
    for i, (q, shots) in enumerate(items):
        ctx = context(q, shots)
        for k, letter in enumerate(LETTERS):
            reqs.append(Instance("loglikelihood", {}, (ctx, " " + letter), i * 4 + k))
    got = [r[0] for r in lm.loglikelihood(reqs)]
    worst = max(abs(g - e) for g, e in zip(got, [x for row in expected for x in row]))
    print(f"lm_eval HFLM vs this script: max |diff| {worst:.2e}")
    if worst > 1e-5:
        sys.exit("mmlu_reference.py: lm_eval disagrees with this script's log-likelihoods")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(FIX, "reference.json"))
    ap.add_argument("--check-harness", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    test, dev = read_mmlu(os.path.join(FIX, "csv"))
    sets = {"0shot": select(test, dev, 0), "5shot": select(test, dev, 5, limit=8)}
    if len(sets["0shot"]) < 200 or len(sets["5shot"]) < 40:
        sys.exit("mmlu_reference.py: the fixture has fewer questions than the check needs")
    logliks = {}
    for name in ("letters", "bytes"):
        model_dir = os.path.join(FIX, f"model-{name}")
        tok = AutoTokenizer.from_pretrained(model_dir)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
        base.eval()
        max_length = base.config.max_position_embeddings
        logliks[name] = {"base": {k: score(base, tok, v, max_length) for k, v in sets.items()}}
        if args.check_harness:
            check_harness(base, tok, sets["0shot"][:20], logliks[name]["base"]["0shot"][:20])
        adapted = PeftModel.from_pretrained(base, os.path.join(FIX, "adapter"))
        adapted.eval()
        logliks[name]["adapter"] = {k: score(adapted, tok, v, max_length) for k, v in sets.items()}
        single = all(len(encode_pair(tok, "Answer:", " " + l)[1]) == 1 for l in LETTERS)
        print(f"{name}: single-token letters {single}", file=sys.stderr)
    described = {
        k: [
            {
                "subject": q["subject"],
                "index": q["index"],
                "answer": q["answer"],
                "context_sha256": hashlib.sha256(context(q, s).encode("utf-8")).hexdigest(),
            }
            for q, s in v
        ]
        for k, v in sets.items()
    }
    out = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "sets": described,
        "logliks": logliks,
        "prompts": {"0shot": [context(q, s) for q, s in sets["0shot"][:3]], "5shot": [context(q, s) for q, s in sets["5shot"][:2]]},
    }
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
