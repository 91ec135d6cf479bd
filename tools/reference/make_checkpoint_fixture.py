"""Safetensors fixtures for test/tensor-safetensors.test.ts.

  python3 tools/reference/make_checkpoint_fixture.py --handmade OUT_DIR
      Plain Python (no packages): writes dtypes.safetensors byte by byte from the format spec
      (https://huggingface.co/docs/safetensors): u64 header length, compact JSON header with
      "__metadata__" first and tensors sorted by descending dtype alignment then name, padded
      with spaces to 8 bytes, then the little-endian data. This is the committed fixture
      test/fixtures/checkpoints/dtypes.safetensors.

  python tools/reference/make_checkpoint_fixture.py OUT_DIR
      With torch + safetensors: writes the same tensors with safetensors.torch.save_file as
      OUT_DIR/dtypes.safetensors; `cmp` it with the committed fixture to confirm the two agree.
"""
import json
import os
import struct
import sys

# name -> (dtype, shape, values); bf16/f16 values are exactly representable.
TENSORS = {
    "f32": ("F32", [2, 3], [1.0, -2.0, 0.5, 3.25, 0.0, -0.125]),
    "bf16": ("BF16", [3], [1.0, -2.5, 3.140625]),
    "f16": ("F16", [1, 2], [0.0999755859375, 65504.0]),
    "u8": ("U8", [3], [0, 7, 255]),
    "i64": ("I64", [2], [-1, 151645]),
}
METADATA = {"format": "pt"}
# Ascending alignment order of the reference implementation's Dtype enum (subset used here).
RANK = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


def encode(dtype, values):
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "BF16":
        # Exactly representable values: bf16 is the top half of the f32 bit pattern.
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    if dtype == "F16":
        return struct.pack("<%de" % len(values), *values)
    if dtype == "U8":
        return bytes(values)
    if dtype == "I64":
        return struct.pack("<%dq" % len(values), *values)
    raise ValueError(dtype)


def handmade(out_dir):
    order = sorted(TENSORS, key=lambda n: (-RANK.index(TENSORS[n][0]), n.encode()))
    parts = ['"__metadata__":' + json.dumps(METADATA, separators=(",", ":"))]
    blobs = []
    offset = 0
    for name in order:
        dtype, shape, values = TENSORS[name]
        blob = encode(dtype, values)
        info = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        parts.append(json.dumps(name) + ":" + json.dumps(info, separators=(",", ":")))
        blobs.append(blob)
        offset += len(blob)
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(os.path.join(out_dir, "dtypes.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"".join(blobs))


def with_library(out_dir):
    import torch
    from safetensors.torch import save_file

    torch_dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "U8": torch.uint8, "I64": torch.int64}
    tensors = {n: torch.tensor(v, dtype=torch_dtype[d]).reshape(s) for n, (d, s, v) in TENSORS.items()}
    save_file(tensors, os.path.join(out_dir, "dtypes.safetensors"), metadata=METADATA)


if __name__ == "__main__":
    args = sys.argv[1:]
    use_handmade = "--handmade" in args
    args = [a for a in args if a != "--handmade"]
    if len(args) != 1:
        sys.exit(__doc__)
    os.makedirs(args[0], exist_ok=True)
    (handmade if use_handmade else with_library)(args[0])
    print("wrote", os.path.join(args[0], "dtypes.safetensors"))
