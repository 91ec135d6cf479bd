#!/usr/bin/env python3
"""Reference token ids, decodes and chat-template renderings from Hugging Face libraries.

sqlora reimplements the tokenizer (tokenizer.json) and chat template (Jinja) in TypeScript;
test/data-tokenizer.test.ts and test/data-chat-template.test.ts compare them with what this
script writes, which becomes test/fixtures/tokenizer/expected.json.

For every string: `tokenizers.Tokenizer.encode(s, add_special_tokens=False).ids` (the library
that defines tokenizer.json), the same through `transformers.AutoTokenizer`, the ids with
special tokens treated as text (`encode_special_tokens`), and decodes. For every conversation:
`apply_chat_template(..., tokenize=False)` with the folder's own template (Qwen1.5) and with a
Qwen2.5 template, for add_generation_prompt False and True, plus the ids of each rendering.
Finally the same tokenizer with extra added tokens that set lstrip/rstrip/single_word/normalized
(added-token-variants.json) encodes a few strings, to pin those matching rules.

Any disagreement between `tokenizers` and `transformers` is printed and makes the script exit 2
after writing the output, so it cannot go unnoticed.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "test", "fixtures", "tokenizer")
UNKNOWN_ID_CASE = [9707, 151900, 1879]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_json(path, key):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        sys.exit(f"{path}: expected an object with a list under {key!r}")
    return data[key]


def encode_with_extra_added_tokens(tokenizer_json, variants_path):
    """The tokenizer plus added tokens with lstrip/rstrip/single_word/normalized flags set,
    which no Qwen tokenizer uses but tokenizer.json allows."""
    with open(variants_path, encoding="utf-8") as f:
        variants = json.load(f)
    with open(tokenizer_json, encoding="utf-8") as f:
        config = json.load(f)
    config["added_tokens"] = config["added_tokens"] + variants["added_tokens"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        tk = Tokenizer.from_file(path)
    for t in variants["added_tokens"]:
        if tk.token_to_id(t["content"]) != t["id"]:
            sys.exit(f"{variants_path}: tokenizers gives {t['content']!r} id {tk.token_to_id(t['content'])}, not {t['id']}")
    cases = []
    for s in variants["strings"]:
        ids = tk.encode(s, add_special_tokens=False).ids
        tk.encode_special_tokens = True
        split_ids = tk.encode(s, add_special_tokens=False).ids
        tk.encode_special_tokens = False
        cases.append({
            "text": s,
            "ids": ids,
            "ids_special_as_text": split_ids,
            "decoded": tk.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tk.decode(ids, skip_special_tokens=True),
        })
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-dir", required=True, help="folder with tokenizer.json and tokenizer_config.json (Qwen1.5)")
    ap.add_argument("--strings", default=os.path.join(FIXTURES, "strings.json"))
    ap.add_argument("--conversations", default=os.path.join(FIXTURES, "conversations.json"))
    ap.add_argument("--qwen25-config", default=os.path.join(FIXTURES, "qwen25-template", "tokenizer_config.json"))
    ap.add_argument("--added-token-variants", default=os.path.join(FIXTURES, "added-token-variants.json"))
    ap.add_argument("--out", required=True, help="output JSON file")
    args = ap.parse_args()

    tokenizer_json = os.path.join(args.tokenizer_dir, "tokenizer.json")
    tokenizer_config = os.path.join(args.tokenizer_dir, "tokenizer_config.json")
    for path in (tokenizer_json, tokenizer_config, args.strings, args.conversations, args.qwen25_config, args.added_token_variants):
        if not os.path.isfile(path):
            sys.exit(f"missing input file: {path}")

    strings = load_json(args.strings, "strings")
    conversations = load_json(args.conversations, "conversations")
    if len(strings) < 50 or len(conversations) < 10:
        sys.exit(f"too few cases: {len(strings)} strings, {len(conversations)} conversations")
    with open(args.qwen25_config, encoding="utf-8") as f:
        qwen25_template = json.load(f)["chat_template"]
    if not isinstance(qwen25_template, str):
        sys.exit(f"{args.qwen25_config}: chat_template is not a string")

    tk = Tokenizer.from_file(tokenizer_json)
    hf = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    problems = []

    string_cases = []
    for s in strings:
        if not isinstance(s, str):
            sys.exit(f"{args.strings}: not a string: {s!r}")
        ids = tk.encode(s, add_special_tokens=False).ids
        hf_ids = list(hf(s, add_special_tokens=False)["input_ids"])
        tk.encode_special_tokens = True
        split_ids = tk.encode(s, add_special_tokens=False).ids
        tk.encode_special_tokens = False
        case = {
            "text": s,
            "ids": ids,
            "ids_special_as_text": split_ids,
            "decoded": tk.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tk.decode(ids, skip_special_tokens=True),
            "token_decodes": [tk.decode([i], skip_special_tokens=False) for i in ids],
        }
        if hf_ids != ids:
            problems.append(f"ids differ for {s!r}: tokenizers {ids} vs transformers {hf_ids}")
        for key, skip in (("decoded", False), ("decoded_skip_special", True)):
            hf_text = hf.decode(ids, skip_special_tokens=skip)
            if hf_text != case[key]:
                problems.append(f"{key} differs for {s!r}: tokenizers {case[key]!r} vs transformers {hf_text!r}")
        string_cases.append(case)

    variant_cases = encode_with_extra_added_tokens(tokenizer_json, args.added_token_variants)

    chat_cases = []
    for conv in conversations:
        name, messages = conv["name"], conv["messages"]
        for template_name, template in (("qwen1.5", None), ("qwen2.5", qwen25_template)):
            for gen in (False, True):
                kwargs = {"tokenize": False, "add_generation_prompt": gen}
                if template is not None:
                    kwargs["chat_template"] = template
                rendered = hf.apply_chat_template(messages, **kwargs)
                if not isinstance(rendered, str):
                    sys.exit(f"apply_chat_template returned {type(rendered).__name__} for {name!r}")
                chat_cases.append({
                    "conversation": name,
                    "template": template_name,
                    "add_generation_prompt": gen,
                    "rendered": rendered,
                    "ids": tk.encode(rendered, add_special_tokens=False).ids,
                })

    out = {
        "meta": {
            "generated_by": "tools/reference/tokenizer_reference.py",
            "tokenizers_version": tokenizers.__version__,
            "transformers_version": transformers.__version__,
            "tokenizer_json_sha256": sha256(tokenizer_json),
            "tokenizer_config_sha256": sha256(tokenizer_config),
            "qwen25_config_sha256": sha256(args.qwen25_config),
            "added_token_variants_sha256": sha256(args.added_token_variants),
            "vocab_size_with_added": tk.get_vocab_size(with_added_tokens=True),
            "len_transformers_tokenizer": len(hf),
            "eos_token_id": hf.eos_token_id,
            "pad_token_id": hf.pad_token_id,
            "bos_token_id": hf.bos_token_id,
            "token_ids": {t: tk.token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "Ġ", "SELECT", "ĠFROM")},
            # A model's embedding table is often larger than the tokenizer; such ids decode to nothing.
            "decode_with_unknown_id": {"ids": UNKNOWN_ID_CASE, "text": tk.decode(UNKNOWN_ID_CASE)},
        },
        "strings": string_cases,
        "chat": chat_cases,
        "added_token_variants": variant_cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(string_cases)} strings, {len(chat_cases)} chat renderings")
    if problems:
        print(f"\n{len(problems)} DISAGREEMENTS between tokenizers and transformers:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
