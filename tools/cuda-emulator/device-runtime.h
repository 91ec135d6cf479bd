// The device side of the CUDA emulator: what a kernel module's CUDA C needs to compile as host
// C++ (g++ -include this header) and run on the CPU. Every CUDA thread of a block is a fiber on
// its own stack; a block's fibers run one at a time on the calling thread and switch only where
// CUDA threads wait for each other (__syncthreads, warp-wide operations), so a launch is
// deterministic. Warp-wide operations (shuffles, ldmatrix, mma.sync) gather all 32 lanes'
// operands before any lane reads a result, as the hardware's do.
//
// Defects this exposes that a lucky GPU run can hide: reads of shared memory that no thread
// wrote (dynamic shared memory is filled with 0xff bytes, a NaN in bf16 and f32, before each
// block), reads of a cp.async destination before its cp.async.wait_group (copies land only at the
// wait), threads that wait at different barriers (reported as a deadlock), and missing barriers
// (odd blocks run their threads in reverse order).
//
// Not emulated: thread block clusters (the emulated GPU is compute capability 8.0, where the
// backend uses none), memory ordering between blocks (blocks run one after another).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __cluster_dims__(...)
#define SQLORA_EMULATOR 1
// Every kernel is compiled (each extern "C" __global__ function gets registered by name), Hopper's
// too; the emulated device reports compute capability 8.0, so the backend launches none of those.
#define __CUDA_ARCH__ 900

struct uint3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

namespace emu {

constexpr int MAX_THREADS = 1024;
constexpr int MAX_WARPS = MAX_THREADS / 32;
constexpr size_t STACK_BYTES = 256 * 1024;
/** Dynamic shared memory of one block: the most any CUDA GPU allows (227 KiB on sm_90). */
constexpr size_t DYNAMIC_SHARED_BYTES = 227 * 1024;

struct Fiber {
  void* sp;
  bool done;
};

/** A 64-bit slot per lane and operand: what warp-wide operations exchange. */
struct WarpSlots {
  uint64_t v[8][32];
};

struct Barrier {
  int arrived = 0;
  int live = 0;
  unsigned generation = 0;
  int andValue = 1;
  int andResult[2] = {1, 1};
};

/** A pending cp.async copy: its bytes are read at issue and land in shared memory at the wait. */
struct AsyncCopy {
  unsigned char* dst;
  int size;
  unsigned char data[16];
  int group;
};

struct Block {
  Fiber fibers[MAX_THREADS];
  Barrier block;
  Barrier warps[MAX_WARPS];
  WarpSlots slots[MAX_WARPS];
  int threads = 0;
  int current = 0;
  long progress = 0;
  void* schedulerSp = nullptr;
  // cp.async state per thread: a small queue of copies and the group counter.
  AsyncCopy* copies[MAX_THREADS] = {};
  int copyCount[MAX_THREADS] = {};
  int copyCapacity[MAX_THREADS] = {};
  int openGroup[MAX_THREADS] = {};
};

inline Block& block() {
  static Block b;
  return b;
}

/** Where a failed launch says why; the driver library reads it back. */
inline char* failure() {
  static char message[512];
  return message;
}

[[noreturn]] inline void fail(const char* what);

// x86-64 System V context switch: saves callee-saved registers on the current stack, stores the
// stack pointer in *from, and resumes the stack `to` (made by a previous switch or by newStack).
extern "C" void emu_switch(void** from, void* to);
asm(R"(
  .text
  .globl emu_switch
  .hidden emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");

} // namespace emu

// The CUDA built-in variables: the scheduler sets threadIdx before resuming a thread.
static uint3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

inline void yieldToScheduler() {
  Block& b = block();
  emu_switch(&b.fibers[b.current].sp, b.schedulerSp);
}

/** Arrival at barrier `bar`; returns once every live thread it counts has arrived. */
inline int arriveAndWait(Barrier& bar, int pred) {
  Block& b = block();
  const unsigned gen = bar.generation;
  if (bar.arrived == 0) bar.andValue = 1;
  bar.andValue &= pred ? 1 : 0;
  b.progress++;
  if (++bar.arrived == bar.live) {
    bar.andResult[gen & 1] = bar.andValue;
    bar.arrived = 0;
    bar.generation++;
  } else {
    while (bar.generation == gen) yieldToScheduler();
  }
  return bar.andResult[gen & 1];
}

/** A thread that returned counts as arrived at the barriers its block and warp wait at. */
inline void leave(Barrier& bar) {
  bar.live--;
  if (bar.arrived > 0 && bar.arrived == bar.live) {
    bar.andResult[bar.generation & 1] = bar.andValue;
    bar.arrived = 0;
    bar.generation++;
  }
}

inline int lane() { return block().current & 31; }
inline int warp() { return block().current >> 5; }

/** Every lane publishes `mine` as operand `slot`, waits for the whole warp, and gets all 32 values. */
inline WarpSlots& exchange(int slot, uint64_t mine) {
  Block& b = block();
  b.slots[warp()].v[slot][lane()] = mine;
  return b.slots[warp()];
}
inline void warpSync() {
  Block& b = block();
  Barrier& w = b.warps[warp()];
  if (w.live != 32) fail("a warp-wide operation ran in a warp with returned threads (its results are undefined on a GPU)");
  arriveAndWait(w, 1);
}

template <class T> inline uint64_t bits64(T v) {
  static_assert(sizeof(T) <= 8, "warp exchange of more than 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T> inline T fromBits64(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

/** The dynamic shared memory, and the base of the 32-bit shared window every shared address is relative to. */
alignas(128) inline unsigned char dynamicShared[DYNAMIC_SHARED_BYTES];

inline unsigned sharedAddress(const void* p) {
  return (unsigned)(uint32_t)((const unsigned char*)p - dynamicShared);
}
inline unsigned char* sharedPointer(unsigned a) {
  return dynamicShared + (int32_t)a;
}

} // namespace emu

// ---- CUDA intrinsics -------------------------------------------------------------------------

inline void __syncthreads() { emu::arriveAndWait(emu::block().block, 1); }
inline int __syncthreads_and(int pred) { return emu::arriveAndWait(emu::block().block, pred); }

template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  if (mask != 0xffffffffu || width != 32) emu::fail("__shfl_xor_sync: only full-warp shuffles are emulated");
  emu::WarpSlots& s = emu::exchange(0, emu::bits64(v));
  emu::warpSync();
  const T r = emu::fromBits64<T>(s.v[0][emu::lane() ^ (laneMask & 31)]);
  emu::warpSync();
  return r;
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  if (mask != 0xffffffffu || width != 32) emu::fail("__shfl_sync: only full-warp shuffles are emulated");
  emu::WarpSlots& s = emu::exchange(0, emu::bits64(v));
  emu::warpSync();
  const T r = emu::fromBits64<T>(s.v[0][src & 31]);
  emu::warpSync();
  return r;
}

// Blocks run one at a time and their threads one at a time: atomics need no atomicity.
template <class T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }

// CUDA's min and max take any mix of arithmetic types.
template <class A, class B> inline std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <class A, class B> inline std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }

// ---- the PTX helpers of kernels/common.ts, tensor-core.ts and rows.ts ------------------------

typedef unsigned short u16;

inline float f16_to_f32(u16 h) { _Float16 f; std::memcpy(&f, &h, 2); return (float)f; }
inline u16 f32_to_f16(float v) { _Float16 f = (_Float16)v; u16 h; std::memcpy(&h, &f, 2); return h; }

namespace emu {
inline u16 bf16Round(float f) {
  unsigned x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);
  return (u16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline float bf16Value(unsigned h) { return __uint_as_float((h & 0xffffu) << 16); }
} // namespace emu

inline unsigned pack_bf16(float lo, float hi) { return (unsigned)emu::bf16Round(lo) | ((unsigned)emu::bf16Round(hi) << 16); }

inline unsigned smem_u32(const void* p) { return emu::sharedAddress(p); }

/** mma.sync m16n8k16 row.col, bf16 operands, f32 accumulators: each lane computes its own four. */
inline void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  emu::Block& blk = emu::block();
  emu::WarpSlots& s = blk.slots[emu::warp()];
  const int l = emu::lane();
  for (int r = 0; r < 4; r++) s.v[r][l] = a[r];
  s.v[4][l] = b0;
  s.v[5][l] = b1;
  emu::warpSync();
  // A(row, k): lane 4 (row % 8) + (k % 8) / 2, register (row >= 8) + 2 (k >= 8), half k % 2.
  // B(k, col): lane 4 col + (k % 8) / 2, register (k >= 8), half k % 2.
  auto A = [&](int row, int k) { return emu::bf16Value((unsigned)(s.v[(row >= 8) + 2 * (k >= 8)][4 * (row & 7) + ((k & 7) >> 1)] >> (16 * (k & 1)))); };
  auto B = [&](int k, int col) { return emu::bf16Value((unsigned)(s.v[4 + (k >= 8)][4 * col + ((k & 7) >> 1)] >> (16 * (k & 1)))); };
  const int g = l >> 2, t = l & 3;
  float out[4];
  for (int i = 0; i < 4; i++) {
    const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
    float acc = c[i];
    for (int k = 0; k < 16; k++) acc += A(row, k) * B(k, col);
    out[i] = acc;
  }
  emu::warpSync();
  for (int i = 0; i < 4; i++) c[i] = out[i];
}

namespace emu {
/** ldmatrix .x4: lanes 8m..8m+7 give matrix m's row addresses; register m of lane l gets its row l / 4, columns 2 (l % 4), +1 (or transposed). */
inline void ldmatrix4(unsigned (&r)[4], unsigned address, bool trans) {
  WarpSlots& s = exchange(0, address);
  warpSync();
  const int l = lane();
  unsigned out[4];
  for (int m = 0; m < 4; m++) {
    u16 lo, hi;
    if (!trans) {
      const unsigned char* row = sharedPointer((unsigned)s.v[0][8 * m + (l >> 2)]);
      std::memcpy(&lo, row + 4 * (l & 3), 2);
      std::memcpy(&hi, row + 4 * (l & 3) + 2, 2);
    } else {
      std::memcpy(&lo, sharedPointer((unsigned)s.v[0][8 * m + 2 * (l & 3)]) + 2 * (l >> 2), 2);
      std::memcpy(&hi, sharedPointer((unsigned)s.v[0][8 * m + 2 * (l & 3) + 1]) + 2 * (l >> 2), 2);
    }
    out[m] = (unsigned)lo | ((unsigned)hi << 16);
  }
  warpSync();
  for (int m = 0; m < 4; m++) r[m] = out[m];
}
} // namespace emu

inline void ldsm4(unsigned (&r)[4], unsigned a) { emu::ldmatrix4(r, a, false); }
inline void ldsm4t(unsigned (&r)[4], unsigned a) { emu::ldmatrix4(r, a, true); }
inline void ldsm4(unsigned (&r)[4], const u16* p) { emu::ldmatrix4(r, smem_u32(p), false); }
inline void ldsm4t(unsigned (&r)[4], const u16* p) { emu::ldmatrix4(r, smem_u32(p), true); }

namespace emu {
inline void asyncCopy(void* dst, const void* src, int size, int bytes) {
  Block& b = block();
  const int t = b.current;
  if (b.copyCount[t] == b.copyCapacity[t]) {
    b.copyCapacity[t] = b.copyCapacity[t] ? 2 * b.copyCapacity[t] : 16;
    b.copies[t] = (AsyncCopy*)realloc(b.copies[t], sizeof(AsyncCopy) * b.copyCapacity[t]);
  }
  AsyncCopy& c = b.copies[t][b.copyCount[t]++];
  c.dst = (unsigned char*)dst;
  c.size = size;
  c.group = b.openGroup[t];
  std::memset(c.data, 0, sizeof c.data);
  if (bytes > 0) std::memcpy(c.data, src, bytes < size ? bytes : size);
}
/** Lands this thread's copies of every group but the newest `pending` committed ones. */
inline void asyncWait(int pending) {
  Block& b = block();
  const int t = b.current, landed = b.openGroup[t] - pending;
  int kept = 0;
  for (int i = 0; i < b.copyCount[t]; i++) {
    AsyncCopy& c = b.copies[t][i];
    if (c.group < landed) std::memcpy(c.dst, c.data, c.size);
    else b.copies[t][kept++] = c;
  }
  b.copyCount[t] = kept;
}
} // namespace emu

inline void cp_async16(void* dst, const void* src, int bytes) { emu::asyncCopy(dst, src, 16, bytes); }
inline void cp_async16(unsigned dst, const void* src, int bytes) { emu::asyncCopy(emu::sharedPointer(dst), src, 16, bytes); }
inline void cp_async4(void* dst, const void* src, int bytes) { emu::asyncCopy(dst, src, 4, bytes); }
inline void cp_commit() { emu::block().openGroup[emu::block().current]++; }
template <int N> inline void cp_wait() { emu::asyncWait(N); }

inline void cluster_sync() { emu::fail("thread block clusters are not emulated"); }
inline float ld_cluster(const float*, int) { emu::fail("thread block clusters are not emulated"); }

// ---- launching -----------------------------------------------------------------------------

namespace emu {

struct Kernel {
  const char* name;
  void* fn;
  void (*call)(void* fn, void** params);
  Kernel* next;
};
inline Kernel*& kernels() {
  static Kernel* head = nullptr;
  return head;
}

template <class... A, size_t... I> inline void callWith(void* fn, void** params, std::index_sequence<I...>) {
  reinterpret_cast<void (*)(A...)>(fn)(*reinterpret_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
}
template <class... A> struct Call {
  static void run(void* fn, void** params) { callWith<A...>(fn, params, std::index_sequence_for<A...>{}); }
};
/** Registers `name` (one per extern "C" __global__ function, appended to the source by the emulated NVRTC). */
struct Register {
  Kernel k;
  template <class... A> Register(const char* name, void (*fn)(A...)) : k{name, (void*)fn, &Call<A...>::run, kernels()} { kernels() = &k; }
};

inline Kernel* running = nullptr;
inline void** runningParams = nullptr;

inline void threadMain() {
  Block& b = block();
  running->call(running->fn, runningParams);
  // Returned: leave the barriers and never run again.
  b.fibers[b.current].done = true;
  leave(b.block);
  leave(b.warps[b.current >> 5]);
  b.progress++;
  void* unused;
  emu_switch(&unused, b.schedulerSp);
  __builtin_unreachable();
}

inline unsigned char* stacks() {
  static unsigned char* base = nullptr;
  if (!base) base = (unsigned char*)aligned_alloc(64, STACK_BYTES * MAX_THREADS);
  return base;
}

/** A fresh stack for thread t whose first switch enters threadMain (with the ABI's alignment). */
inline void* newStack(int t) {
  uint64_t* top = (uint64_t*)(stacks() + STACK_BYTES * (t + 1));
  *--top = 0;                              // threadMain's return address (it never returns)
  *--top = (uint64_t)(void*)&threadMain;   // where emu_switch's ret goes
  for (int i = 0; i < 6; i++) *--top = 0;  // rbp, rbx, r12-r15
  return top;
}

[[noreturn]] inline void fail(const char* what) {
  Block& b = block();
  snprintf(failure(), 512, "%s (block %u,%u,%u thread %d)", what, blockIdx.x, blockIdx.y, blockIdx.z, b.current);
  void* unused;
  // Back to the scheduler, which abandons the launch.
  b.progress = -1;
  emu_switch(&unused, b.schedulerSp);
  __builtin_unreachable();
}

inline void setThreadIdx(int t) {
  threadIdx.x = (unsigned)t % blockDim.x;
  threadIdx.y = ((unsigned)t / blockDim.x) % blockDim.y;
  threadIdx.z = (unsigned)t / (blockDim.x * blockDim.y);
}

/** Runs one block to completion; false (with failure() set) on a deadlock or a failed check. */
inline bool runBlock(bool reverse, unsigned sharedBytes) {
  Block& b = block();
  const int n = b.threads;
  b.block = Barrier{};
  b.block.live = n;
  for (int w = 0; w < (n + 31) / 32; w++) {
    b.warps[w] = Barrier{};
    b.warps[w].live = (w + 1) * 32 <= n ? 32 : n - w * 32;
  }
  for (int t = 0; t < n; t++) {
    b.fibers[t] = Fiber{newStack(t), false};
    b.copyCount[t] = 0;
    b.openGroup[t] = 0;
  }
  std::memset(dynamicShared, 0xff, sharedBytes);
  b.progress = 0;
  int remaining = n;
  while (remaining > 0) {
    const long before = b.progress;
    for (int i = 0; i < n; i++) {
      const int t = reverse ? n - 1 - i : i;
      if (b.fibers[t].done) continue;
      b.current = t;
      setThreadIdx(t);
      emu_switch(&b.schedulerSp, b.fibers[t].sp);
      if (b.progress < 0) return false;
      if (b.fibers[t].done) remaining--;
    }
    if (remaining > 0 && b.progress == before) {
      int atBlock = 0;
      for (int t = 0; t < n; t++) atBlock += !b.fibers[t].done;
      snprintf(failure(), 512, "deadlock in block %u,%u,%u: %d threads wait at barriers that cannot complete (%d at __syncthreads, the rest at warp-wide operations)",
               blockIdx.x, blockIdx.y, blockIdx.z, atBlock, b.block.arrived);
      return false;
    }
  }
  return true;
}

} // namespace emu

inline emu::Kernel* findKernel(const char* name) {
  emu::Kernel* k = emu::kernels();
  while (k && std::strcmp(k->name, name) != 0) k = k->next;
  return k;
}

/** Whether the module has kernel `name` (cuModuleGetFunction). */
extern "C" __attribute__((visibility("default"))) int sqlora_emu_has(const char* name) { return findKernel(name) != nullptr; }

/** The driver library's entry: runs kernel `name` over the grid. 0 on success, else failure text in `error`. */
extern "C" __attribute__((visibility("default"))) int sqlora_emu_launch(const char* name, const unsigned* grid, const unsigned* blockDims,
                                                                       unsigned sharedBytes, void** params, char* error, int errorBytes) {
  emu::Kernel* k = findKernel(name);
  auto refuse = [&](const char* why) { snprintf(error, errorBytes, "%s: %s", name, why); return 1; };
  if (!k) return refuse("no such kernel in this module");
  const unsigned threads = blockDims[0] * blockDims[1] * blockDims[2];
  if (threads == 0 || threads > (unsigned)emu::MAX_THREADS) return refuse("a block needs 1 to 1024 threads");
  if (sharedBytes > emu::DYNAMIC_SHARED_BYTES) return refuse("more dynamic shared memory than any GPU has");
  gridDim = {grid[0], grid[1], grid[2]};
  blockDim = {blockDims[0], blockDims[1], blockDims[2]};
  emu::block().threads = (int)threads;
  emu::running = k;
  emu::runningParams = params;
  long index = 0;
  for (unsigned z = 0; z < grid[2]; z++)
    for (unsigned y = 0; y < grid[1]; y++)
      for (unsigned x = 0; x < grid[0]; x++, index++) {
        blockIdx = {x, y, z};
        if (!emu::runBlock(index & 1, sharedBytes)) {
          snprintf(error, errorBytes, "%s: %s", name, emu::failure());
          return 1;
        }
      }
  return 0;
}
