"""Independent NF4 reference for test/quant-nf4.test.ts (plain Python 3, no packages).

  python3 tools/reference/nf4_reference.py test/fixtures/nf4
  python tools/reference/nf4_reference.py --check-torch-map     (needs torch)
      Compares our float32 dynamic map with the one bitsandbytes' create_dynamic_map builds
      with torch.linspace (whose vectorized CPU path may round differently); exit 1 on any
      difference, listing the entries.

Implements bitsandbytes' published 4-bit NormalFloat quantization with double quantization,
as its CUDA kernels compute it with IEEE float32 arithmetic:
  - blocks of 64 values; absmax = max |w|; x = f32(w * f32(1 / absmax));
  - code = the nearest of the 16 NF4 values, found here by comparing x with the float32
    midpoints between neighbouring codes (x above a midpoint -> upper code, ties -> lower);
    a block of zeros gives x = NaN, which the kernel's comparisons send to code 0;
  - two codes per byte, the first element in the high nibble, an odd tail padded with x = 0;
  - double quantization: offset = mean(absmax) (float64 sum, rounded to f32), then the
    centred absmax values f32(a - offset) are quantized in blocks of 256 against the signed
    dynamic 8-bit map (nearest by midpoints again), with their own f32 absmax per block.
Writes OUT_DIR/nf4_cases.safetensors: for each case `<case>.input` (BF16) and the tensors
bitsandbytes' Linear4bit state dict holds for that weight (`<case>.weight`, `.weight.absmax`,
`.weight.quant_map`, `.weight.nested_absmax`, `.weight.nested_quant_map`,
`.weight.quant_state.bitsandbytes__nf4`), laid out as the safetensors library writes them.
"""
import bisect
import json
import math
import os
import struct
import sys

NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def f32(x):
    """Round a Python float to the nearest float32 (ties to even)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def linspace_f32(start, end, steps):
    """torch.linspace in float32 as its vectorized CPU kernel computes it: from the start for the
    first half, else from the end, each point one fused multiply-add (step * i is not rounded;
    in double it is exact). Checked against torch 2.11 (AVX512) with --check-torch-map."""
    start, end = f32(start), f32(end)
    step = f32(f32(end - start) / (steps - 1))
    half = steps // 2
    return [f32(start + step * i) if i < half else f32(end - step * (steps - i - 1)) for i in range(steps)]


def dynamic_map():
    """Signed dynamic 8-bit map: 7 exponent levels 1e-6..1e0, 2^i linear steps at level i."""
    data = []
    for i in range(7):
        bounds = linspace_f32(0.1, 1.0, 2**i + 1)
        means = [f32(f32(bounds[k] + bounds[k + 1]) / 2.0) for k in range(2**i)]
        scale = f32(10.0 ** (i - 6))
        data += [f32(scale * m) for m in means]
        data += [-f32(scale * m) for m in means]
    data += [0.0, 1.0]
    assert len(data) == 256
    return sorted(data)


def nearest(code, mids, x):
    """Index of the nearest code value: above a midpoint -> upper, on it -> lower, NaN -> 0."""
    if x != x:
        return 0
    return bisect.bisect_left(mids, x)


def midpoints(code):
    return [f32(f32(code[i] + code[i + 1]) * 0.5) for i in range(len(code) - 1)]


def blockwise(values, blocksize, code):
    """Quantizes values in blocks: returns (codes, absmax per block)."""
    mids = midpoints(code)
    codes, absmax = [], []
    for b in range(0, len(values), blocksize):
        block = values[b:b + blocksize]
        a = max(abs(v) for v in block)
        absmax.append(a)
        if a == 0:
            # 1/0 = inf and 0 * inf = NaN in the kernel: every value of the block gets code 0.
            codes += [nearest(code, mids, math.nan)] * len(block)
            continue
        inv = f32(1.0 / a)
        codes += [nearest(code, mids, f32(v * inv)) for v in block]
    return codes, absmax


def quantize_nf4(values, shape, dtype_name):
    codes, absmax = blockwise(values, 64, [f32(v) for v in NF4])
    if len(codes) % 2:
        # The kernel pads the tail with a 0 scaled like the rest of its block.
        codes.append(0 if absmax[-1] == 0 else nearest(NF4, midpoints([f32(v) for v in NF4]), 0.0))
    packed = bytes((codes[i] << 4) | codes[i + 1] for i in range(0, len(codes), 2))
    total = 0.0
    for a in absmax:
        total += a
    offset = f32(total / len(absmax))
    centred = [f32(a - offset) for a in absmax]
    dyn = dynamic_map()
    qabsmax, nested_absmax = blockwise(centred, 256, dyn)
    state = {
        "quant_type": "nf4", "blocksize": 64, "dtype": dtype_name, "shape": list(shape),
        "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset,
    }
    return {
        "weight": ("U8", [len(packed), 1], packed),
        "weight.absmax": ("U8", [len(qabsmax)], bytes(qabsmax)),
        "weight.quant_map": ("F32", [16], struct.pack("<16f", *NF4)),
        "weight.nested_absmax": ("F32", [len(nested_absmax)], struct.pack("<%df" % len(nested_absmax), *nested_absmax)),
        "weight.nested_quant_map": ("F32", [256], struct.pack("<256f", *dyn)),
        "weight.quant_state.bitsandbytes__nf4": ("U8", [len(json.dumps(state))], json.dumps(state).encode()),
    }


def bf16_round(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
    return bits, struct.unpack("<f", struct.pack("<I", bits << 16))[0]


class SplitMix64:
    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def uniform(self):
        return ((self.next() >> 11) + 0.5) / 2.0**53

    def gauss(self):
        return math.sqrt(-2.0 * math.log(self.uniform())) * math.cos(2.0 * math.pi * self.uniform())


def make_case(seed, rows, cols, std, zero_rows=(), outliers=()):
    rng = SplitMix64(seed)
    bits, values = [], []
    for r in range(rows):
        for c in range(cols):
            v = 0.0 if r in zero_rows else rng.gauss() * std
            for (orow, ocol, ov) in outliers:
                if (r, c) == (orow, ocol):
                    v = ov
            b, f = bf16_round(v)
            bits.append(b)
            values.append(f)
    return bits, values


CASES = {
    # 256 blocks -> exactly one nested block of 256.
    "gauss_64x256": dict(seed=1, rows=64, cols=256, std=0.02),
    # 3300 values: a partial last block, 52 blocks.
    "gauss_33x100": dict(seed=2, rows=33, cols=100, std=0.02),
    # 63 values: one partial block, an odd count (padding nibble), constant absmax (NaN path).
    "tiny_7x9": dict(seed=3, rows=7, cols=9, std=1.0),
    # 300 blocks -> two nested blocks; two all-zero blocks; outliers.
    "mixed_300x64": dict(seed=4, rows=300, cols=64, std=0.02, zero_rows=(5, 200), outliers=((7, 3, 0.75), (100, 0, -1.5))),
}


def write_safetensors(path, tensors, metadata):
    rank = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
    order = sorted(tensors, key=lambda n: (-rank.index(tensors[n][0]), n.encode()))
    parts = ['"__metadata__":' + json.dumps(metadata, separators=(",", ":"))]
    offset = 0
    for name in order:
        dtype, shape, blob = tensors[name]
        parts.append(json.dumps(name) + ":" + json.dumps({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}, separators=(",", ":")))
        offset += len(blob)
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"".join(tensors[n][2] for n in order))


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for name, spec in CASES.items():
        bits, values = make_case(**spec)
        tensors[name + ".input"] = ("BF16", [spec["rows"], spec["cols"]], struct.pack("<%dH" % len(bits), *bits))
        for key, t in quantize_nf4(values, [spec["rows"], spec["cols"]], "bfloat16").items():
            tensors[name + "." + key] = t
    write_safetensors(os.path.join(out_dir, "nf4_cases.safetensors"), tensors, {"format": "pt"})
    # The tree thresholds in bitsandbytes' kernel should be these midpoints, rounded to float32.
    print("nf4 midpoints:", midpoints([f32(v) for v in NF4]))
    print("wrote", os.path.join(out_dir, "nf4_cases.safetensors"))


def check_torch_map():
    import torch

    data = []
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    torch_map = torch.tensor(sorted(data), dtype=torch.float32).tolist()
    ours = dynamic_map()
    diff = [(k, ours[k], torch_map[k]) for k in range(256) if ours[k] != torch_map[k]]
    for k, a, b in diff:
        print(f"entry {k}: ours {a!r} torch {b!r}")
    print(f"{len(diff)} of 256 entries differ (torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()})")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check-torch-map"]:
        check_torch_map()
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
