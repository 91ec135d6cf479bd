/**
 * CUDA C shared by every kernel module. Float tensors reach a kernel as an untyped pointer plus
 * a dtype code (DT_F32/DT_BF16/DT_F16, see DTYPE_CODE), so one kernel serves every mix of
 * float dtypes; the branch is uniform across a launch and costs little next to memory traffic.
 * Conversions are written out (bf16 with round-to-nearest-even, f16 through PTX cvt) so the
 * source needs no CUDA headers: NVRTC then compiles it with nothing but the driver installed.
 */
import type { TensorDType } from '../../backend.js';

export const DTYPE_CODE: Readonly<Record<Exclude<TensorDType, 'i32' | 'nf4'>, number>> = { f32: 0, bf16: 1, f16: 2 };

/** Codes kernels write to the device error word (see CudaBackend.download). */
export const DEVICE_ERRORS: Readonly<Record<number, string>> = {
  1: 'embedding: a token id is outside the vocabulary',
  2: 'crossEntropy: a target is outside the vocabulary',
  3: 'gatherRows or scatterRows: an index is outside the indexed rows',
};

export const COMMON_CUDA = String.raw`
typedef unsigned short u16;
typedef long long i64;
#define DT_F32 0
#define DT_BF16 1
#define DT_F16 2
#define NEG_INF (__int_as_float(0xff800000))

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((unsigned)h) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float f) {
  unsigned x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);
  return (u16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
#ifndef SQLORA_EMULATOR  // tools/cuda-emulator/device-runtime.h has the PTX helpers for the CPU
__device__ __forceinline__ float f16_to_f32(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f32_to_f16(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#endif

__device__ __forceinline__ float ldf(const void* p, int dt, i64 i) {
  if (dt == DT_BF16) return bf16_to_f32(((const u16*)p)[i]);
  if (dt == DT_F16) return f16_to_f32(((const u16*)p)[i]);
  return ((const float*)p)[i];
}
__device__ __forceinline__ void stf(void* p, int dt, i64 i, float v) {
  if (dt == DT_BF16) ((u16*)p)[i] = f32_to_bf16(v);
  else if (dt == DT_F16) ((u16*)p)[i] = f32_to_f16(v);
  else ((float*)p)[i] = v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/** 8 bf16 values of a 16-byte load as floats, and back (round to nearest even). */
__device__ __forceinline__ void unpack8(const uint4 w, float (&v)[8]) {
  const unsigned u[4] = {w.x, w.y, w.z, w.w};
  #pragma unroll
  for (int k = 0; k < 4; k++) { v[2 * k] = bf16_to_f32((u16)(u[k] & 0xffffu)); v[2 * k + 1] = bf16_to_f32((u16)(u[k] >> 16)); }
}
__device__ __forceinline__ uint4 pack8(const float (&v)[8]) {
  unsigned u[4];
  #pragma unroll
  for (int k = 0; k < 4; k++) u[k] = (unsigned)f32_to_bf16(v[2 * k]) | ((unsigned)f32_to_bf16(v[2 * k + 1]) << 16);
  uint4 w;
  w.x = u[0]; w.y = u[1]; w.z = u[2]; w.w = u[3];
  return w;
}
/** x[j] += bias[j % D8] for 8 bf16 at a time (a bias row of D8 16-byte chunks). */
__device__ __forceinline__ void add_bias8(uint4* x, const uint4* bias, i64 j, int D8) {
  float v[8], b[8];
  unpack8(x[j], v);
  unpack8(bias[j % D8], b);
  #pragma unroll
  for (int k = 0; k < 8; k++) v[k] += b[k];
  x[j] = pack8(v);
}

#ifndef SQLORA_EMULATOR
/**
 * 2^x from the special-function unit alone (ex2.approx.ftz, about 2 ulp; results below 2^-126
 * flush to zero). exp2f adds a rescaling for such tiny results: four more instructions per
 * element, which made up much of the flash kernels' probability code (ncu, H200).
 */
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
/** Two floats as bf16x2, lo in the low half (round to nearest even, one instruction on sm_80+). */
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
#endif

/**
 * RoPE's cosine and sine for a position and inverse frequency: the angle rounded to f32 as HF's
 * f32 product of positions and frequencies, its cosine and sine taken in doubles (as the CPU
 * backend's Math.cos / Math.sin) and rounded to f32.
 */
__device__ __forceinline__ float2 rope_cos_sin(int pos, float invFreq) {
  double s, c;
  sincos((double)((float)pos * invFreq), &s, &c);
  return make_float2((float)c, (float)s);
}

/** murmur3's 32-bit finalizer, behind the dropout masks (backend.ts's fmix32). */
__device__ __forceinline__ unsigned fmix32(unsigned h) {
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}
/**
 * The hash of element pair "pair" (elements 2 pair and 2 pair + 1) under seedMix = fmix32(seed):
 * its low 16 bits decide the even element, its high 16 bits the odd one (backend.ts's
 * dropoutUniform times 2^16). Only the pair index's low 32 bits count, so callers may compute it
 * in 32-bit arithmetic (wrapping).
 */
__device__ __forceinline__ unsigned dropout_pair_hash(unsigned pair, unsigned seedMix) { return fmix32(pair * 0x9e3779b1u + seedMix); }
/** Element i's 16 bits. */
__device__ __forceinline__ unsigned dropout_bits(i64 i, unsigned seedMix) {
  const unsigned h = dropout_pair_hash((unsigned)(i >> 1), seedMix);
  return (i & 1) ? h >> 16 : h & 0xffffu;
}
/** The bit mask keeping each bf16 half of a pair's word whose 16 bits are >= keepFrom (= ceil(p 2^16)). */
__device__ __forceinline__ unsigned dropout_mask2(unsigned h, unsigned keepFrom) {
  return ((h & 0xffffu) >= keepFrom ? 0xffffu : 0u) | ((h >> 16) >= keepFrom ? 0xffff0000u : 0u);
}

/** Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. */
__device__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.f;
  return warp_sum(v);
}
`;
