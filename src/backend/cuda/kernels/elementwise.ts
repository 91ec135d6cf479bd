/**
 * Elementwise kernels: dtype conversion, add/axpy/scale/bias, dropout (the exact hash of
 * backend.ts's dropoutUniform), SwiGLU forward/backward, AdamW (in doubles, rounding m and v
 * to f32 where the CPU reference stores them), NF4 quantization and dequantization and the
 * embedding gather.
 * All loop grid-stride over 64-bit indices; add, dropout and SwiGLU have all-bf16 variants
 * that move 16 bytes per access.
 */
import { kernelModule, type KernelModule } from '../device.js';
import { COMMON_CUDA } from './common.js';

const SOURCE = String.raw`
#define GRID_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

extern "C" __global__ void convert(void* dst, int ddt, const void* src, int sdt, i64 n) {
  GRID_LOOP(i, n) stf(dst, ddt, i, ldf(src, sdt, i));
}

extern "C" __global__ void add(void* out, int odt, const void* a, int adt, const void* b, int bdt, i64 n) {
  GRID_LOOP(i, n) stf(out, odt, i, ldf(a, adt, i) + ldf(b, bdt, i));
}

extern "C" __global__ void axpy(void* y, int ydt, const void* x, int xdt, double alpha, i64 n) {
  GRID_LOOP(i, n) stf(y, ydt, i, (float)((double)ldf(y, ydt, i) + alpha * (double)ldf(x, xdt, i)));
}

extern "C" __global__ void scale(void* x, int dt, double s, i64 n) {
  GRID_LOOP(i, n) stf(x, dt, i, (float)((double)ldf(x, dt, i) * s));
}

/** x *= maxNorm / (sqrt(ss[0]) + 1e-6) when that is below 1 and finite (the host's clip_grad_norm_ arithmetic). */
extern "C" __global__ void clip_by_norm(void* x, int dt, const float* ss, double maxNorm, i64 n) {
  const double norm = sqrt((double)ss[0]);
  const double coef = maxNorm / (norm + 1e-6);
  if (!(norm <= 1.0e308) || !(coef < 1.0)) return;
  GRID_LOOP(i, n) stf(x, dt, i, (float)((double)ldf(x, dt, i) * coef));
}

extern "C" __global__ void add_bias(void* x, int xdt, const void* bias, int bdt, i64 n, int D) {
  GRID_LOOP(i, n) stf(x, xdt, i, ldf(x, xdt, i) + ldf(bias, bdt, i % D));
}

/** seedMix = fmix32(seed), computed once on the host. */
extern "C" __global__ void dropout(void* out, int odt, const void* x, int xdt, double p, double keepScale, unsigned seedMix, i64 n) {
  GRID_LOOP(i, n) {
    const double u = (double)dropout_bits(i, seedMix) * (1.0 / 65536.0);
    stf(out, odt, i, u >= p ? (float)((double)ldf(x, xdt, i) * keepScale) : 0.f);
  }
}

extern "C" __global__ void swiglu_fwd(void* out, int odt, const void* gate, int gdt, const void* up, int udt, i64 n) {
  GRID_LOOP(i, n) {
    const float g = ldf(gate, gdt, i);
    stf(out, odt, i, g / (1.f + expf(-g)) * ldf(up, udt, i));
  }
}

extern "C" __global__ void swiglu_bwd(void* dgate, int dgdt, void* dup, int dudt, const void* dout, int ddt,
                                      const void* gate, int gdt, const void* up, int udt, i64 n) {
  GRID_LOOP(i, n) {
    const float g = ldf(gate, gdt, i), u = ldf(up, udt, i), d = ldf(dout, ddt, i);
    const float sig = 1.f / (1.f + expf(-g));
    stf(dgate, dgdt, i, d * u * sig * (1.f + g * (1.f - sig)));
    stf(dup, dudt, i, d * g * sig);
  }
}

extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, i64 n,
                                 double beta1, double beta2, double decay, double stepSize, double bc2Sqrt, double eps) {
  GRID_LOOP(i, n) {
    const double gi = g[i];
    const float mi = (float)((double)m[i] + (gi - (double)m[i]) * (1.0 - beta1));
    const float vi = (float)((double)v[i] * beta2 + (1.0 - beta2) * gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = (float)((double)p[i] * decay - (stepSize * (double)mi) / (sqrt((double)vi) / bc2Sqrt + eps));
  }
}

/**
 * NF4 blocks of 64 as tensor/nf4-blocks.ts defines them, one warp per block, lane j on elements
 * 2j and 2j + 1: absmax = max |w| (NaNs ignored), inv = 1 / absmax and x = w * inv, each one
 * IEEE rounding as on the host (NVRTC divides exactly without fast math; a lone product cannot
 * be fused), the code = how many of the code book's f32 midpoints x lies strictly above.
 */
extern "C" __global__ void nf4_quantize64(unsigned char* packed, float* absmax, const float* src, const float* code, i64 n) {
  float mid[15];
  #pragma unroll
  for (int i = 0; i < 15; i++) mid[i] = (code[i] + code[i + 1]) * 0.5f;
  const int lane = threadIdx.x & 31;
  const i64 blocks = (n + 63) / 64;
  // blockDim is a multiple of 32, so a warp's lanes share b.
  for (i64 b = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; b < blocks; b += ((i64)gridDim.x * blockDim.x) >> 5) {
    const i64 e = b * 64 + 2 * lane;
    const float x0 = e < n ? src[e] : 0.f, x1 = e + 1 < n ? src[e + 1] : 0.f;
    float m = 0.f;
    if (fabsf(x0) > m) m = fabsf(x0);
    if (fabsf(x1) > m) m = fabsf(x1);
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float t = __shfl_xor_sync(0xffffffffu, m, o);
      if (t > m) m = t;
    }
    const float inv = 1.f / m; // a zero block: inf, then 0 * inf = NaN, code 0
    const float y0 = x0 * inv, y1 = x1 * inv;
    int c0 = 0, c1 = 0;
    #pragma unroll
    for (int i = 0; i < 15; i++) {
      c0 += y0 > mid[i];
      c1 += y1 > mid[i];
    }
    if (e < n) packed[e >> 1] = (unsigned char)((c0 << 4) | c1);
    if (lane == 0) absmax[b] = m;
  }
}

/**
 * Element e = code[nibble e] * absmax[e / blockSize], nibble e the high half of byte e/2 for even
 * e. Eight elements per step: one 32-bit load of codes and, when blocks hold whole groups of
 * eight, one scale and one 16-byte store (out is an allocator block, so aligned). blockShift is
 * log2(blockSize) for a power of two (the usual 64), else -1.
 */
extern "C" __global__ void nf4_dequant(void* out, int odt, const unsigned char* codes, const float* absmax,
                                       const float* code, i64 n, int blockSize, int blockShift) {
  __shared__ float cb[16];
  if (threadIdx.x < 16) cb[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const bool whole = (blockSize & 7) == 0;
  GRID_LOOP(g, (n + 7) / 8) {
    const i64 e0 = g * 8;
    if (whole && e0 + 8 <= n) {
      const unsigned w = ((const unsigned*)codes)[g];
      const float s = absmax[blockShift >= 0 ? (e0 >> blockShift) : e0 / blockSize];
      float v[8];
      #pragma unroll
      for (int k = 0; k < 4; k++) {
        const unsigned byte = (w >> (8 * k)) & 255u;
        v[2 * k] = cb[byte >> 4] * s;
        v[2 * k + 1] = cb[byte & 15u] * s;
      }
      if (odt == DT_F32) {
        float4 lo, hi;
        lo.x = v[0]; lo.y = v[1]; lo.z = v[2]; lo.w = v[3];
        hi.x = v[4]; hi.y = v[5]; hi.z = v[6]; hi.w = v[7];
        ((float4*)out)[2 * g] = lo;
        ((float4*)out)[2 * g + 1] = hi;
      } else {
        unsigned h[8];
        #pragma unroll
        for (int k = 0; k < 8; k++) h[k] = odt == DT_BF16 ? f32_to_bf16(v[k]) : f32_to_f16(v[k]);
        uint4 w4;
        w4.x = h[0] | (h[1] << 16); w4.y = h[2] | (h[3] << 16); w4.z = h[4] | (h[5] << 16); w4.w = h[6] | (h[7] << 16);
        ((uint4*)out)[g] = w4;
      }
    } else {
      for (i64 e = e0; e < e0 + 8 && e < n; e++) {
        const unsigned byte = codes[e >> 1];
        stf(out, odt, e, cb[(e & 1) ? (byte & 15u) : (byte >> 4)] * absmax[e / blockSize]);
      }
    }
  }
}

/** One weight's 16-element step g of nf4_dequant_bf16x16: codes and scale in, two 16-byte stores out. */
__device__ __forceinline__ void nf4_step16(uint4* out, const uint2* codes, const float* absmax, const float* cb, i64 g, int blockShift) {
  const uint2 w = codes[g];
  const float s = absmax[(g * 16) >> blockShift];
  unsigned h[8];
  #pragma unroll
  for (int k = 0; k < 8; k++) {
    const unsigned byte = ((k < 4 ? w.x : w.y) >> (8 * (k & 3))) & 255u;
    h[k] = pack_bf16(cb[byte >> 4] * s, cb[byte & 15u] * s);
  }
  out[2 * g] = make_uint4(h[0], h[1], h[2], h[3]);
  out[2 * g + 1] = make_uint4(h[4], h[5], h[6], h[7]);
}

/**
 * nf4_dequant for bf16 outputs and power-of-two blocks of at least 16 elements (the usual 64):
 * 16 elements per step from one 8-byte load of codes and one scale, rounded two at a time by
 * cvt (the same round-to-nearest-even), two 16-byte stores.
 */
extern "C" __global__ void nf4_dequant_bf16x16(uint4* out, const uint2* codes, const float* absmax, const float* code, i64 n16, int blockShift) {
  __shared__ float cb[16];
  if (threadIdx.x < 16) cb[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  GRID_LOOP(g, n16) nf4_step16(out, codes, absmax, cb, g, blockShift);
}

/**
 * nf4_dequant_bf16x16 of up to three weights in one launch (the projections a layer multiplies
 * together: small weights take a few microseconds each, mostly the launch's ramp and tail). An
 * absent weight has n16 = 0.
 */
extern "C" __global__ void nf4_dequant_bf16x16_3(uint4* o0, const uint2* c0, const float* a0, const float* q0, i64 n0,
                                                 uint4* o1, const uint2* c1, const float* a1, const float* q1, i64 n1,
                                                 uint4* o2, const uint2* c2, const float* a2, const float* q2, i64 n2, int blockShift) {
  __shared__ float cb[3][16];
  if (threadIdx.x < 48) {
    const int m = threadIdx.x >> 4;
    const float* q = m == 0 ? q0 : m == 1 ? q1 : q2;
    if ((m == 0 ? n0 : m == 1 ? n1 : n2) > 0) cb[m][threadIdx.x & 15] = q[threadIdx.x & 15];
  }
  __syncthreads();
  GRID_LOOP(i, n0 + n1 + n2) {
    if (i < n0) nf4_step16(o0, c0, a0, cb[0], i, blockShift);
    else if (i < n0 + n1) nf4_step16(o1, c1, a1, cb[1], i - n0, blockShift);
    else nf4_step16(o2, c2, a2, cb[2], i - n0 - n1, blockShift);
  }
}

// bf16 fast paths (the host picks them when every tensor is bf16, 16-byte aligned and the size
// a multiple of 8) move 8 elements per thread through unpack8/pack8 of common.ts.
extern "C" __global__ void add_bias_bf16x8(uint4* x, const uint4* bias, i64 n8, int D8) {
  GRID_LOOP(g, n8) add_bias8(x, bias, g, D8);
}

extern "C" __global__ void add_bf16x8(uint4* out, const uint4* a, const uint4* b, i64 n8) {
  GRID_LOOP(g, n8) {
    float x[8], y[8];
    unpack8(a[g], x);
    unpack8(b[g], y);
    #pragma unroll
    for (int k = 0; k < 8; k++) x[k] += y[k];
    out[g] = pack8(x);
  }
}

extern "C" __global__ void dropout_bf16x8(uint4* out, const uint4* x, double p, double keepScale, unsigned seedMix, i64 n8) {
  GRID_LOOP(g, n8) {
    float v[8];
    unpack8(x[g], v);
    #pragma unroll
    for (int k = 0; k < 8; k += 2) {
      const unsigned h = dropout_pair_hash((unsigned)(g * 4 + k / 2), seedMix);
      v[k] = (double)(h & 0xffffu) * (1.0 / 65536.0) >= p ? (float)((double)v[k] * keepScale) : 0.f;
      v[k + 1] = (double)(h >> 16) * (1.0 / 65536.0) >= p ? (float)((double)v[k + 1] * keepScale) : 0.f;
    }
    out[g] = pack8(v);
  }
}

extern "C" __global__ void swiglu_fwd_bf16x8(uint4* out, const uint4* gate, const uint4* up, i64 n8) {
  GRID_LOOP(g, n8) {
    float a[8], b[8];
    unpack8(gate[g], a);
    unpack8(up[g], b);
    #pragma unroll
    for (int k = 0; k < 8; k++) a[k] = a[k] / (1.f + expf(-a[k])) * b[k];
    out[g] = pack8(a);
  }
}

extern "C" __global__ void swiglu_bwd_bf16x8(uint4* dgate, uint4* dup, const uint4* dout, const uint4* gate, const uint4* up, i64 n8) {
  GRID_LOOP(g, n8) {
    float a[8], b[8], d[8], ga[8], gu[8];
    unpack8(gate[g], a);
    unpack8(up[g], b);
    unpack8(dout[g], d);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
      const float sig = 1.f / (1.f + expf(-a[k]));
      ga[k] = d[k] * b[k] * sig * (1.f + a[k] * (1.f - sig));
      gu[k] = d[k] * a[k] * sig;
    }
    dgate[g] = pack8(ga);
    dup[g] = pack8(gu);
  }
}

/** One block per token; an id outside [0, V) sets error word 1 and yields a zero row. */
extern "C" __global__ void embedding(void* out, int odt, const void* table, int tdt, const int* ids, int D, int V, int* err) {
  const i64 n = blockIdx.x;
  const int id = ids[n];
  const bool ok = id >= 0 && id < V;
  if (!ok && threadIdx.x == 0) atomicExch(err, 1);
  for (int d = threadIdx.x; d < D; d += blockDim.x) stf(out, odt, n * D + d, ok ? ldf(table, tdt, (i64)id * D + d) : 0.f);
}
`;

export const ELEMENTWISE: KernelModule = kernelModule('elementwise', COMMON_CUDA + SOURCE);
