/**
 * The CUDA backend's elementwise operations (adds, scales, dropout, SwiGLU, AdamW): each a
 * launch of the elementwise module, in a bf16 variant moving 8 elements per access where every
 * tensor allows, else the generic one that takes each tensor's dtype.
 */
import { checkBias, checkDropoutP, checkSameSize, type AdamWOptions, type Tensor } from '../backend.js';
import type { CudaBackend } from './cuda-backend.js';
import { asCuda, floatArg, ptrOf } from './cuda-tensor.js';
import { loraSeedMix } from './kernels/lora.js';
import { bf16x8, elementwise, ptrArg } from './launch.js';

export function addBias(cb: CudaBackend, x: Tensor, bias: Tensor): void {
  const D = bias.size;
  checkBias(x, D);
  if (D % 8 === 0 && bf16x8(x, bias))
    elementwise(cb.device, 'add_bias_bf16x8', x.size / 8, [ptrArg(x), ptrArg(bias), x.size / 8, D / 8]);
  else
    elementwise(cb.device, 'add_bias', x.size, [
      ...floatArg(x, 'addBias x'),
      ...floatArg(bias, 'addBias bias'),
      x.size,
      D,
    ]);
}

export function add(cb: CudaBackend, out: Tensor, a: Tensor, b: Tensor): void {
  checkSameSize('add', out, a, b);
  if (bf16x8(out, a, b))
    elementwise(cb.device, 'add_bf16x8', out.size / 8, [ptrArg(out), ptrArg(a), ptrArg(b), out.size / 8]);
  else
    elementwise(cb.device, 'add', out.size, [
      ...floatArg(out, 'add out'),
      ...floatArg(a, 'add a'),
      ...floatArg(b, 'add b'),
      out.size,
    ]);
}

export function axpy(cb: CudaBackend, y: Tensor, x: Tensor, alpha: number): void {
  checkSameSize('axpy', y, x);
  elementwise(cb.device, 'axpy', y.size, [...floatArg(y, 'axpy y'), ...floatArg(x, 'axpy x'), alpha, y.size]);
}

export function scale(cb: CudaBackend, x: Tensor, s: number): void {
  elementwise(cb.device, 'scale', x.size, [...floatArg(x, 'scale x'), s, x.size]);
}

export function clipByNorm(cb: CudaBackend, x: Tensor, sumSquares: Tensor, maxNorm: number): void {
  elementwise(cb.device, 'clip_by_norm', x.size, [
    ...floatArg(x, 'clipByNorm x'),
    ptrOf(sumSquares, 'f32', 'clipByNorm sumSquares'),
    maxNorm,
    x.size,
  ]);
}

export function dropout(cb: CudaBackend, out: Tensor, x: Tensor, p: number, seed: number): void {
  checkSameSize('dropout', out, x);
  checkDropoutP(p);
  const o = asCuda(out, 'dropout out'),
    s = asCuda(x, 'dropout x');
  if (p === 0) {
    if (o.ptr !== s.ptr || o.dtype !== s.dtype) cb.copy(out, x);
    return;
  }
  const seedMix = loraSeedMix(seed);
  if (bf16x8(out, x))
    elementwise(cb.device, 'dropout_bf16x8', out.size / 8, [o.ptr, s.ptr, p, 1 / (1 - p), seedMix, out.size / 8]);
  else
    elementwise(cb.device, 'dropout', out.size, [
      ...floatArg(out, 'dropout out'),
      ...floatArg(x, 'dropout x'),
      p,
      1 / (1 - p),
      seedMix,
      out.size,
    ]);
}

export function swigluForward(cb: CudaBackend, out: Tensor, gate: Tensor, up: Tensor): void {
  checkSameSize('swigluForward', out, gate, up);
  if (bf16x8(out, gate, up))
    elementwise(cb.device, 'swiglu_fwd_bf16x8', out.size / 8, [ptrArg(out), ptrArg(gate), ptrArg(up), out.size / 8]);
  else
    elementwise(cb.device, 'swiglu_fwd', out.size, [
      ...floatArg(out, 'swiglu out'),
      ...floatArg(gate, 'swiglu gate'),
      ...floatArg(up, 'swiglu up'),
      out.size,
    ]);
}

export function swigluBackward(
  cb: CudaBackend,
  dgate: Tensor,
  dup: Tensor,
  dout: Tensor,
  gate: Tensor,
  up: Tensor,
): void {
  checkSameSize('swigluBackward', dgate, dup, dout, gate, up);
  if (bf16x8(dgate, dup, dout, gate, up)) {
    elementwise(cb.device, 'swiglu_bwd_bf16x8', dout.size / 8, [
      ptrArg(dgate),
      ptrArg(dup),
      ptrArg(dout),
      ptrArg(gate),
      ptrArg(up),
      dout.size / 8,
    ]);
    return;
  }
  elementwise(cb.device, 'swiglu_bwd', dout.size, [
    ...floatArg(dgate, 'swiglu dgate'),
    ...floatArg(dup, 'swiglu dup'),
    ...floatArg(dout, 'swiglu dout'),
    ...floatArg(gate, 'swiglu gate'),
    ...floatArg(up, 'swiglu up'),
    dout.size,
  ]);
}

export function adamw(cb: CudaBackend, param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWOptions): void {
  checkSameSize('adamw', param, grad, m, v);
  const bc1 = 1 - o.beta1 ** o.step;
  elementwise(cb.device, 'adamw', param.size, [
    ptrOf(param, 'f32', 'adamw param'),
    ptrOf(grad, 'f32', 'adamw grad'),
    ptrOf(m, 'f32', 'adamw m'),
    ptrOf(v, 'f32', 'adamw v'),
    param.size,
    o.beta1,
    o.beta2,
    1 - o.lr * o.weightDecay,
    o.lr / bc1,
    Math.sqrt(1 - o.beta2 ** o.step),
    o.eps,
  ]);
}
