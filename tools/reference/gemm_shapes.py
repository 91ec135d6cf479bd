"""The base products of a training step at Qwen1.5-1.8B's shapes (8192 tokens, bf16) in torch,
for comparison with tools/gpu-check/gemm-shapes.ts run in the same command, and torch's causal
sdpa (flash) attention forward and backward at 16 x 512, 16 heads of 128."""
import torch

M, D, I = 8192, 2048, 5504


def time(fn, iters=20):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / iters


print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}: products of {M} tokens, bf16")
for out, inp in [(D, D), (I, D), (D, I)]:
    w = torch.randn(out, inp, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(M, inp, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(M, out, device="cuda", dtype=torch.bfloat16)
    fl = 2 * M * out * inp
    for name, fn in [("forward ", lambda: x @ w.t()), ("gradient", lambda: y @ w)]:
        ms = time(fn)
        print(f"{name} [{out}, {inp}]".ljust(44), f"{ms:8.3f} ms {fl / ms / 1e9:5.0f} TFLOP/s")

q, k, v = (torch.randn(16, 16, 512, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
fwd = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
out = fwd()
g = torch.randn_like(out)
fwd_ms = time(fwd)
both_ms = time(lambda: torch.autograd.grad(fwd(), (q, k, v), g))
fl = 4 * 16 * 16 * 512 * 512 * 128 / 2
print(f"sdpa causal 16x512, 16 heads of 128: forward {fwd_ms:.3f} ms ({fl / fwd_ms / 1e9:.0f} TFLOP/s), backward {both_ms - fwd_ms:.3f} ms ({2.5 * fl / (both_ms - fwd_ms) / 1e9:.0f} TFLOP/s)")
