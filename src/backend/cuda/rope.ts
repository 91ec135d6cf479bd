/**
 * Rotary position embeddings on the CUDA backend: the rotation (with an optional bias added
 * first), the decoding step's rotate-and-append into the KV cache, and the device tables they
 * read (inverse frequencies, and the cosine/sine table of the attention backward's fused RoPE).
 */
import { ropeAppendKvDims, ropeInvFreq, type Tensor } from '../backend.js';
import type { RopeTables } from './attention.js';
import type { CudaBackend } from './cuda-backend.js';
import { floatArg, ptrOf, type CudaTensor } from './cuda-tensor.js';
import { DECODE } from './kernels/decode.js';
import { ROWS } from './kernels/rows.js';
import { bf16x8, ptrArg } from './launch.js';

/**
 * Rotates x into out. With a bias (added first), only the bf16 kernel applies: returns false
 * when it does not, having done nothing.
 */
export function rope(
  cb: CudaBackend,
  out: Tensor,
  x: Tensor,
  positions: Tensor,
  theta: number,
  sign: number,
  bias?: Tensor,
): boolean {
  const hd = x.shape[x.shape.length - 1];
  const N = positions.size;
  if (N === 0 || x.size === 0) return true;
  if (hd % 2 !== 0 || x.size % (N * hd) !== 0)
    throw new Error(`rope: x [${x.shape.join(', ')}] is not [N=${N}, heads, even head dim]`);
  const half = hd / 2,
    H = x.size / (N * hd);
  if (bias && bias.size !== H * hd) throw new Error(`ropeForward: bias of ${bias.size} for ${H} heads of ${hd}`);
  if (half % 8 === 0 && bf16x8(out, x, ...(bias ? [bias] : []))) {
    cb.device.launch(cb.device.kernel(ROWS, 'rope_bf16x8'), [Math.ceil((N * half) / 8 / 256)], 256, 0, [
      ptrArg(out),
      ptrArg(x),
      bias ? ptrArg(bias) : 0,
      ptrOf(positions, 'i32', 'rope positions'),
      cb.ropes.tables(theta, hd).invFreq.ptr,
      N,
      H,
      hd,
      sign,
    ]);
    return true;
  }
  if (bias) return false;
  cb.device.launch(cb.device.kernel(ROWS, 'rope'), [Math.ceil((N * half) / 256)], 256, 0, [
    ...floatArg(out, 'rope out'),
    ...floatArg(x, 'rope x'),
    ptrOf(positions, 'i32', 'rope positions'),
    cb.ropes.tables(theta, hd).invFreq.ptr,
    N,
    H,
    hd,
    sign,
  ]);
  return true;
}

export function ropeAppendKv(
  cb: CudaBackend,
  kCache: Tensor,
  vCache: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  positions: Tensor,
  offset: number,
  theta: number,
): void {
  const d = ropeAppendKvDims(kCache, vCache, q, k, v, positions, offset);
  const N = d.B * d.T,
    half = d.hd / 2;
  if (N === 0) return;
  if (d.hd % 2 !== 0) throw new Error(`ropeAppendKv: head dim ${d.hd} is odd`);
  cb.device.launch(cb.device.kernel(DECODE, 'rope_append_kv'), [Math.ceil((N * half) / 256)], 256, 0, [
    ...floatArg(kCache, 'ropeAppendKv kCache'),
    ...floatArg(vCache, 'ropeAppendKv vCache'),
    ...floatArg(q, 'ropeAppendKv q'),
    ...floatArg(k, 'ropeAppendKv k'),
    ...floatArg(v, 'ropeAppendKv v'),
    ptrOf(positions, 'i32', 'ropeAppendKv positions'),
    cb.ropes.tables(theta, d.hd).invFreq.ptr,
    N,
    d.T,
    d.S,
    offset,
    d.H,
    d.Hkv,
    d.hd,
  ]);
}

/** RoPE's device tables for one (theta, head dim). */
interface RopeCache {
  invFreq: CudaTensor;
  /** rope_table's (cosine, sine) [P, hd / 2, 2] of positions [0, P); null until the attention backward's fused RoPE asks. */
  cosSin: CudaTensor | null;
}

/** RoPE's device tables by (theta, head dim), kept for the backend's lifetime. */
export class RopeCaches {
  private readonly caches = new Map<string, RopeCache>();

  constructor(private readonly cb: CudaBackend) {}

  /** The tables for (theta, head dim), the inverse frequencies uploaded on first use. */
  tables(theta: number, hd: number): RopeCache {
    const key = `${theta}/${hd}`;
    let c = this.caches.get(key);
    if (!c)
      this.caches.set(
        key,
        (c = { invFreq: this.cb.upload(ropeInvFreq(theta, hd), [hd / 2]) as CudaTensor, cosSin: null }),
      );
    return c;
  }

  /** The inverse frequencies and rope_table's (cosine, sine) for positions [0, P), P >= minP (grown as needed). */
  cosSin(theta: number, hd: number, minP: number): RopeTables {
    const c = this.tables(theta, hd);
    let table = c.cosSin;
    if (!table || table.shape[0] < minP) {
      if (table) this.cb.free(table);
      const P = Math.max(4096, Math.ceil(minP / 1024) * 1024),
        half = hd / 2;
      table = this.cb.empty([P, half, 2], 'f32') as CudaTensor;
      const device = this.cb.device;
      device.launch(device.kernel(ROWS, 'rope_table'), [Math.ceil((P * half) / 256)], 256, 0, [
        table.ptr,
        c.invFreq.ptr,
        P,
        half,
      ]);
      c.cosSin = table;
    }
    return { cosSin: table.ptr, P: table.shape[0], invFreq: c.invFreq.ptr };
  }
}
