#!/usr/bin/env python3
"""Reference generations for sqlora's generate(), from HF transformers' generate().

Reads prompts as token-id lists (test/fixtures/generate/prompts.json, written by
tools/fixtures/make-generate-prompts.ts) and, for each tiny model variant of
test/fixtures/tiny/ (tools/reference/tiny_model.py), records the new token ids per prompt of:
  greedy          do_sample=False, batched with left padding (batch_size prompts at a time,
                  in file order), max_new_tokens, no eos;
  greedy_eos      the same with eos_token_id = the token greedy produced most often after the
                  first new token (ties: the smallest id), so rows stop at different steps; each
                  row's ids end at (and include) its first eos, the padding after it dropped;
  greedy_penalty  greedy with repetition_penalty (one prompt at a time, so no padding token
                  enters the penalty).
Writes OUT/expected.json. CPU, f32, deterministic; a few seconds.

Usage (from the repository root):
  python3 tools/reference/generate_reference.py test/fixtures/generate/prompts.json test/fixtures/tiny OUT_DIR
Needs torch and transformers (5.x).
"""
import argparse
import json
import os
import sys
from collections import Counter

import torch
import transformers
from transformers import GenerationConfig, Qwen2ForCausalLM


def fail(msg):
    print(f"generate_reference.py: {msg}", file=sys.stderr)
    sys.exit(1)


def run(model, prompts, batch_size, pad_id, max_new, eos=None, penalty=1.0):
    cfg = GenerationConfig(
        max_new_tokens=max_new, do_sample=False, pad_token_id=pad_id, eos_token_id=eos, bos_token_id=None,
        repetition_penalty=penalty,
    )
    out = []
    for start in range(0, len(prompts), batch_size):
        group = prompts[start:start + batch_size]
        T = max(len(p) for p in group)
        ids = torch.full((len(group), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), T), dtype=torch.long)
        for b, p in enumerate(group):
            ids[b, T - len(p):] = torch.tensor(p)
            mask[b, T - len(p):] = 1
        with torch.no_grad():
            seqs = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        for b in range(len(group)):
            new = seqs[b, T:].tolist()
            if eos is not None and eos in new:
                new = new[: new.index(eos) + 1]
            out.append(new)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prompts", help="prompts.json")
    ap.add_argument("tiny", help="folder of tools/reference/tiny_model.py's output (test/fixtures/tiny)")
    ap.add_argument("out", help="output folder (created)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    with open(args.prompts) as f:
        spec = json.load(f)
    prompts, bs, pad, max_new = spec["prompts"], spec["batch_size"], spec["pad_id"], spec["max_new_tokens"]
    penalty = spec["repetition_penalty"]
    if any(pad in p for p in prompts):
        fail(f"prompts must not contain the pad id {pad}")
    with open(os.path.join(args.tiny, "manifest.json")) as f:
        variants = json.load(f)["variants"]

    result = {"torch": torch.__version__, "transformers": transformers.__version__, "variants": {}}
    for v in variants:
        model = Qwen2ForCausalLM.from_pretrained(os.path.join(args.tiny, v, "model"), dtype=torch.float32, attn_implementation="eager").eval()
        greedy = run(model, prompts, bs, pad, max_new)
        counts = Counter(t for row in greedy for t in row[1:])
        eos = min(counts, key=lambda t: (-counts[t], t))
        with_eos = run(model, prompts, bs, pad, max_new, eos=eos)
        stopped = sum(1 for row in with_eos if len(row) < max_new or row[-1] == eos)
        if stopped == 0:
            fail(f"{v}: no row stopped at eos {eos}")
        with_penalty = run(model, prompts, 1, pad, max_new, penalty=penalty)
        result["variants"][v] = {"eos_id": eos, "greedy": greedy, "greedy_eos": with_eos, "greedy_penalty": with_penalty}
        print(f"{v}: eos {eos} stops {stopped} of {len(prompts)} rows; penalty changes {sum(a != b for a, b in zip(greedy, with_penalty))} rows")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "expected.json")
    with open(path, "w") as f:
        json.dump(result, f)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
