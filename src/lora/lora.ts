/**
 * LoRA adapters on a backend: configuration, PEFT-style initialization, the device factors and
 * gradient accumulators the model reads (LoraProvider), and host copies for saving. Tensor
 * names are PEFT's (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`), so an
 * adapter moves between here, adapter_model.safetensors and Python PEFT unchanged.
 */
import type { Backend, HostFloats, Tensor } from '../backend/backend.js';
import type { Qwen2Config } from '../model/config.js';
import type { LayerLora } from '../model/qwen2-layer.js';
import { PROJECTIONS, type LoraWeights, type ProjectionName } from '../model/qwen2-linear.js';
import type { LoraProvider } from '../model/qwen2.js';
import { projectionPrefix } from '../model/qwen2-weights.js';
import { f32Tensor, toF32, type HostTensor } from '../tensor/tensor.js';
import { UserError } from '../util/errors.js';
import { mulberry32 } from '../util/random.js';

export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** Adapted projections, in PROJECTIONS order. */
  targetModules: ProjectionName[];
  /** Scale alpha / sqrt(r) instead of alpha / r. */
  useRslora: boolean;
}

/** An adapter in host memory: its config and PEFT-named f32 tensors. */
export interface HostLora {
  config: LoraConfig;
  tensors: Record<string, HostTensor>;
}

export interface LoraParameter {
  /** PEFT tensor name. */
  name: string;
  param: Tensor;
  grad: Tensor;
}

export function loraScale(c: LoraConfig): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

/** Checks ranges and normalizes the module list (dedup, canonical order). */
export function validateLoraConfig(c: LoraConfig): LoraConfig {
  if (!Number.isSafeInteger(c.r) || c.r <= 0) throw new UserError(`LoRA r must be a positive integer, got ${c.r}`);
  if (!(c.alpha > 0)) throw new UserError(`LoRA alpha must be positive, got ${c.alpha}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new UserError(`LoRA dropout must be in [0, 1), got ${c.dropout}`);
  for (const m of c.targetModules) {
    if (!(PROJECTIONS as readonly string[]).includes(m)) {
      throw new UserError(`LoRA target module ${JSON.stringify(m)} is not one of ${PROJECTIONS.join(', ')}`);
    }
  }
  const targetModules = PROJECTIONS.filter((p) => c.targetModules.includes(p));
  if (targetModules.length === 0) throw new UserError('LoRA needs at least one target module');
  return { ...c, targetModules };
}

/** PEFT's name of lora_A / lora_B of a projection. */
export function peftTensorName(layer: number, p: ProjectionName, which: 'A' | 'B'): string {
  return `base_model.model.${projectionPrefix(layer, p)}.lora_${which}.weight`;
}

/** [out, in] of a projection. */
export function projectionShape(cfg: Qwen2Config, p: ProjectionName): [number, number] {
  const D = cfg.hiddenSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim, I = cfg.intermediateSize;
  switch (p) {
    case 'q_proj': return [q, D];
    case 'k_proj': case 'v_proj': return [kv, D];
    case 'o_proj': return [D, q];
    case 'gate_proj': case 'up_proj': return [I, D];
    case 'down_proj': return [D, I];
  }
}

/**
 * A fresh adapter initialized as PEFT does by default: A ~ kaiming_uniform(a = sqrt(5)), i.e.
 * U(-1/sqrt(in), 1/sqrt(in)), and B = 0, so the adapted model starts equal to the base.
 */
export function initLora(cfg: Qwen2Config, config: LoraConfig, seed: number): HostLora {
  const c = validateLoraConfig(config);
  const rand = mulberry32(seed);
  const tensors: Record<string, HostTensor> = {};
  for (let i = 0; i < cfg.numLayers; i++) {
    for (const p of c.targetModules) {
      const [out, inp] = projectionShape(cfg, p);
      const bound = 1 / Math.sqrt(inp);
      const a = new Float32Array(c.r * inp);
      for (let j = 0; j < a.length; j++) a[j] = (2 * rand() - 1) * bound;
      tensors[peftTensorName(i, p, 'A')] = f32Tensor([c.r, inp], a);
      tensors[peftTensorName(i, p, 'B')] = f32Tensor([out, c.r], new Float32Array(out * c.r));
    }
  }
  return { config: c, tensors };
}

/** Adapter factors and gradients on a backend; attach with model.setLora(adapter). */
export class LoraAdapter implements LoraProvider {
  private readonly layers: LayerLora[] = [];
  private readonly params: LoraParameter[] = [];

  private constructor(private readonly be: Backend, readonly config: LoraConfig) {}

  /** Uploads a host adapter, checking every tensor against the model's projection shapes. */
  static upload(be: Backend, cfg: Qwen2Config, host: HostLora): LoraAdapter {
    const c = validateLoraConfig(host.config);
    const ad = new LoraAdapter(be, c);
    const scale = loraScale(c);
    const expected = new Set<string>();
    for (let i = 0; i < cfg.numLayers; i++) {
      const layer: LayerLora = {};
      for (const p of c.targetModules) {
        const [out, inp] = projectionShape(cfg, p);
        const nameA = peftTensorName(i, p, 'A'), nameB = peftTensorName(i, p, 'B');
        expected.add(nameA).add(nameB);
        const a = ad.param(nameA, host.tensors[nameA], [c.r, inp]);
        const b = ad.param(nameB, host.tensors[nameB], [out, c.r]);
        const w: LoraWeights = { a: a.param, b: b.param, gradA: a.grad, gradB: b.grad, scale, dropout: c.dropout };
        layer[p] = w;
      }
      ad.layers.push(layer);
    }
    const extra = Object.keys(host.tensors).filter((n) => !expected.has(n));
    if (extra.length > 0) {
      ad.free();
      throw new UserError(`adapter has tensors its config does not explain (e.g. ${extra[0]}); target_modules or num_hidden_layers differ`);
    }
    return ad;
  }

  layer(i: number): LayerLora {
    return this.layers[i];
  }

  /** Every trainable tensor with its gradient, in a stable order. */
  parameters(): LoraParameter[] {
    return this.params;
  }

  zeroGrad(): void {
    for (const p of this.params) this.be.fill(p.grad, 0);
  }

  /** Current factors as host tensors (PEFT names). */
  toHost(): HostLora {
    const tensors: Record<string, HostTensor> = {};
    for (const p of this.params) tensors[p.name] = f32Tensor(p.param.shape, Float32Array.from(this.be.download(p.param)));
    return { config: { ...this.config, targetModules: [...this.config.targetModules] }, tensors };
  }

  /** Gradients as host arrays by PEFT name (for tests and diagnostics). */
  gradsToHost(): Record<string, HostFloats> {
    return Object.fromEntries(this.params.map((p) => [p.name, this.be.download(p.grad)]));
  }

  free(): void {
    for (const p of this.params) {
      this.be.free(p.param);
      this.be.free(p.grad);
    }
    this.params.length = 0;
    this.layers.length = 0;
  }

  private param(name: string, t: HostTensor | undefined, shape: [number, number]): LoraParameter {
    if (!t) throw new UserError(`adapter is missing ${name}`);
    if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
      throw new UserError(`adapter tensor ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (r or model size differ)`);
    }
    const p: LoraParameter = { name, param: this.be.upload(toF32(t), shape, 'f32'), grad: this.be.alloc(shape, 'f32') };
    this.params.push(p);
    return p;
  }
}
