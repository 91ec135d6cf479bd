"""Baseline for the CUDA backend's step timings: HF transformers + PEFT LoRA training steps at
Qwen1.5-1.8B's layer shapes (hidden 2048, 16 heads, MLP 5504, vocabulary 151936), random weights,
batch 8 x 512, LoRA r=16 / alpha 32 / dropout 0.05 on q,k,v,o, torch AdamW, bf16 autocast as
Trainer(bf16=True) runs it, SDPA attention. The base stays bf16: this is LoRA, not QLoRA (the GPU
machine has no bitsandbytes; its 4-bit matmuls would only be slower). Models of 2 and 4 layers are
timed and the 24-layer step extrapolated, exactly as tools/gpu-check/timing.ts does.

    python3 tools/gpu-check/hf_step_timing.py OUT_DIR
"""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM


def step_ms(layers: int) -> float:
    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=2048, intermediate_size=5504, num_hidden_layers=layers, num_attention_heads=16,
                      num_key_value_heads=16, vocab_size=151936, rope_theta=1e6, tie_word_embeddings=False,
                      attn_implementation="sdpa")
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    ids = torch.randint(1, 150000, (8, 512), device="cuda")
    labels = ids.clone()
    labels[:, : int(512 * 0.4)] = -100

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) / 3 * 1000
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"HF+PEFT LoRA step, {layers} layers, 8 x 512: {ms:.1f} ms, peak {peak:.2f} GiB", flush=True)
    del model, opt
    torch.cuda.empty_cache()
    return ms


def main() -> None:
    two, four = step_ms(2), step_ms(4)
    per_layer = (four - two) / 2
    full = two - 2 * per_layer + 24 * per_layer
    print(f"HF+PEFT per layer {per_layer:.1f} ms; estimated 24-layer step {full:.0f} ms = {8 * 512 / full * 1000:.0f} tokens/s",
          f"({torch.cuda.get_device_name()}, torch {torch.__version__})", flush=True)
    if len(sys.argv) > 1:
        with open(f"{sys.argv[1]}/hf-step-timing.json", "w") as f:
            json.dump({"two": two, "four": four, "perLayer": per_layer, "estimated24": full}, f)


if __name__ == "__main__":
    main()
