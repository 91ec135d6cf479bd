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

/**
 * Every parameter of an adapter in one buffer (and every gradient in another of the same
 * layout), so that clipping, AdamW and zeroing are one kernel each instead of one per tensor.
 */
export interface FlatParameters {
  param: Tensor;
  grad: Tensor;
  /** Element offset of each parameter (in parameters() order) within both buffers. */
  offsets: number[];
}

/** Parameters start at multiples of this many elements (256 bytes of f32), so views stay aligned. */
const FLAT_ALIGN = 64;

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
  const D = cfg.hiddenSize,
    q = cfg.numHeads * cfg.headDim,
    kv = cfg.numKvHeads * cfg.headDim,
    I = cfg.intermediateSize;
  switch (p) {
    case 'q_proj':
      return [q, D];
    case 'k_proj':
    case 'v_proj':
      return [kv, D];
    case 'o_proj':
      return [D, q];
    case 'gate_proj':
    case 'up_proj':
      return [I, D];
    case 'down_proj':
      return [D, I];
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

/**
 * Adapter factors and gradients on a backend; attach with model.setLora(adapter). Factors and
 * gradients live in one f32 buffer each (see FlatParameters); on a backend computing in a
 * 16-bit dtype, a copy of the factors in that dtype feeds the matrix products (PEFT under
 * autocast also multiplies in bf16), refreshed by prepare() before every pass.
 */
export class LoraAdapter implements LoraProvider {
  private readonly layers: LayerLora[] = [];
  private readonly params: LoraParameter[] = [];
  private flatParams: FlatParameters | null = null;
  private computeCopy: Tensor | null = null;

  private constructor(
    private readonly be: Backend,
    readonly config: LoraConfig,
  ) {}

  /**
   * Uploads a host adapter, checking every tensor against the model's projection shapes;
   * `source` (the weights file it was read from) is named in the errors.
   */
  static upload(be: Backend, cfg: Qwen2Config, host: HostLora, source?: string): LoraAdapter {
    const where = source !== undefined ? `${source}: ` : '';
    const c = validateLoraConfig(host.config);
    const ad = new LoraAdapter(be, c);
    const scale = loraScale(c);
    const expected: { name: string; shape: [number, number] }[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      for (const p of c.targetModules) {
        const [out, inp] = projectionShape(cfg, p);
        expected.push(
          { name: peftTensorName(i, p, 'A'), shape: [c.r, inp] },
          { name: peftTensorName(i, p, 'B'), shape: [out, c.r] },
        );
      }
    }
    const names = new Set(expected.map((e) => e.name));
    const extra = Object.keys(host.tensors).filter((n) => !names.has(n));
    if (extra.length > 0) {
      throw new UserError(
        `${where}adapter has tensors its config does not explain (e.g. ${extra[0]}); target_modules or num_hidden_layers differ`,
      );
    }
    const offsets: number[] = [];
    let total = 0;
    for (const e of expected) {
      offsets.push(total);
      total += Math.ceil((e.shape[0] * e.shape[1]) / FLAT_ALIGN) * FLAT_ALIGN;
    }
    const values = new Float32Array(total);
    expected.forEach((e, k) => values.set(checkedValues(where, e.name, host.tensors[e.name], e.shape), offsets[k]));
    const flat: FlatParameters = { param: be.upload(values, [total], 'f32'), grad: be.alloc([total], 'f32'), offsets };
    ad.flatParams = flat;
    if (be.computeDType !== 'f32') ad.computeCopy = be.empty([total], be.computeDType);
    const view = (t: Tensor, k: number): Tensor =>
      be.reshape(be.rows(t, offsets[k], expected[k].shape[0] * expected[k].shape[1]), expected[k].shape);
    let k = 0;
    for (let i = 0; i < cfg.numLayers; i++) {
      const layer: LayerLora = {};
      for (const p of c.targetModules) {
        const [a, b] = [k, k + 1].map((j) => {
          const param: LoraParameter = { name: expected[j].name, param: view(flat.param, j), grad: view(flat.grad, j) };
          ad.params.push(param);
          return param;
        });
        const w: LoraWeights = { a: a.param, b: b.param, gradA: a.grad, gradB: b.grad, scale, dropout: c.dropout };
        if (ad.computeCopy) {
          w.aCompute = view(ad.computeCopy, k);
          w.bCompute = view(ad.computeCopy, k + 1);
        }
        layer[p] = w;
        k += 2;
      }
      ad.layers.push(layer);
    }
    ad.prepare();
    return ad;
  }

  layer(i: number): LayerLora {
    return this.layers[i];
  }

  /** Refreshes the compute-dtype copy of the factors (the model calls this before each pass). */
  prepare(): void {
    if (this.computeCopy && this.flatParams) this.be.copy(this.computeCopy, this.flatParams.param);
  }

  /** Every trainable tensor with its gradient, in a stable order. */
  parameters(): LoraParameter[] {
    return this.params;
  }

  /** The buffers behind parameters(): clip, update and zero them in one kernel each. */
  flat(): FlatParameters {
    if (!this.flatParams) throw new Error('LoraAdapter: used after free()');
    return this.flatParams;
  }

  zeroGrad(): void {
    this.be.fill(this.flat().grad, 0);
  }

  /** Current factors as host tensors (PEFT names). */
  toHost(): HostLora {
    const tensors: Record<string, HostTensor> = {};
    for (const p of this.params)
      tensors[p.name] = f32Tensor(p.param.shape, Float32Array.from(this.be.download(p.param)));
    return { config: { ...this.config, targetModules: [...this.config.targetModules] }, tensors };
  }

  /** Gradients as host arrays by PEFT name (for tests and diagnostics). */
  gradsToHost(): Record<string, HostFloats> {
    return Object.fromEntries(this.params.map((p) => [p.name, this.be.download(p.grad)]));
  }

  free(): void {
    for (const t of [this.flatParams?.param, this.flatParams?.grad, this.computeCopy]) if (t) this.be.free(t);
    this.flatParams = null;
    this.computeCopy = null;
    this.params.length = 0;
    this.layers.length = 0;
  }
}

function checkedValues(where: string, name: string, t: HostTensor | undefined, shape: [number, number]): Float32Array {
  if (!t) throw new UserError(`${where}adapter is missing ${name}`);
  if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
    throw new UserError(
      `${where}adapter tensor ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (r or model size differ)`,
    );
  }
  return toF32(t);
}
