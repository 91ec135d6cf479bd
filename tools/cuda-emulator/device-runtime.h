// The device side of the CUDA emulator: what a kernel module's CUDA C needs to compile as host
// C++ (g++ -include this header) and run on the CPU. Every CUDA thread of a block is a fiber on
// its own stack; a block's fibers run one at a time on the calling thread and switch only where
// CUDA threads wait for each other (__syncthreads, warp-wide operations), so a launch is
// deterministic. Warp-wide operations (shuffles, ldmatrix, mma.sync) gather all 32 lanes'
// operands before any lane reads a result, as the hardware's do.
//
// Defects this exposes that a lucky GPU run can hide: reads of shared memory that no thread
// wrote (a block's shared memory, its __shared__ variables and the dynamic part, is filled with
// 0xff bytes, a NaN in bf16 and f32, before it runs), reads of a cp.async destination before its
// cp.async.wait_group (copies land only at the wait), threads that wait at different barriers
// (reported as a deadlock), misaligned ldmatrix and cp.async addresses (the driver compiles
// modules with the sanitizer's alignment checks for plain loads and stores), and missing
// barriers (odd blocks run their threads in reverse order).
//
// Thread block clusters run their blocks together (cluster barriers, reads of another block's
// shared memory); other blocks run one after another, so nothing about the ordering of memory
// between blocks is emulated.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __cluster_dims__(...)
#define SQLORA_EMULATOR 1
// Every kernel is compiled (each extern "C" __global__ function gets registered by name), Hopper's
// too; which ones the backend launches follows the compute capability the device reports.
#define __CUDA_ARCH__ 900

struct uint3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

namespace emu {

constexpr int MAX_THREADS = 1024;
/** Blocks of a cluster (the portable limit). */
constexpr int MAX_CLUSTER = 8;
constexpr int MAX_FIBERS = MAX_THREADS * MAX_CLUSTER;
constexpr int MAX_WARPS = MAX_FIBERS / 32;
constexpr size_t STACK_BYTES = 128 * 1024;
/** A block's shared memory: its __shared__ variables first, then its dynamic shared memory. */
constexpr size_t STATIC_SHARED_BYTES = 48 * 1024;
/** Dynamic shared memory of one block: the most any CUDA GPU allows (227 KiB on sm_90). */
constexpr size_t DYNAMIC_SHARED_BYTES = 227 * 1024;
constexpr size_t ARENA_BYTES = STATIC_SHARED_BYTES + DYNAMIC_SHARED_BYTES;

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

/** The blocks running together (one, or a cluster): fiber f is thread f % threads of block f / threads. */
struct Block {
  Fiber fibers[MAX_FIBERS];
  Barrier blocks[MAX_CLUSTER];
  Barrier cluster;
  Barrier warps[MAX_WARPS];
  WarpSlots slots[MAX_WARPS];
  int threads = 0;
  int clusterSize = 1;
  int current = 0;
  long progress = 0;
  void* schedulerSp = nullptr;
  unsigned firstBlockX = 0;
  // cp.async state per fiber: a small queue of copies and the group counter.
  AsyncCopy* copies[MAX_FIBERS] = {};
  int copyCount[MAX_FIBERS] = {};
  int copyCapacity[MAX_FIBERS] = {};
  int openGroup[MAX_FIBERS] = {};
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
/** Abandons the launch, saying why (defined with the scheduler). */
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

/** The running thread's lane, its warp (numbered across the blocks running together) and its block among them. */
inline int lane() { return (block().current % block().threads) & 31; }
inline int warp() {
  const Block& b = block();
  return (b.current / b.threads) * (MAX_THREADS / 32) + ((b.current % b.threads) >> 5);
}
inline int blockInCluster() { return block().current / block().threads; }

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

/** The shared memory of the blocks running together, one arena each: the base of its 32-bit shared window. */
alignas(128) inline unsigned char arenas[MAX_CLUSTER][ARENA_BYTES];

inline unsigned char* arena() { return arenas[blockInCluster()]; }
inline unsigned char* dynamicShared() { return arena() + STATIC_SHARED_BYTES; }

/** Shared addresses are offsets in the running block's arena. */
inline unsigned sharedAddress(const void* p) {
  return (unsigned)(uint32_t)((const unsigned char*)p - arena());
}
inline unsigned char* sharedPointer(unsigned a) {
  return arena() + (int32_t)a;
}

/** Where each __shared__ variable of the module lives in an arena (by declaration, laid out on first use). */
inline size_t& staticSharedUsed() {
  static size_t used = 0;
  return used;
}
template <class T, size_t ALIGN> inline T& sharedVariable(size_t& offset) {
  if (offset == SIZE_MAX) {
    const size_t a = ALIGN > alignof(T) ? ALIGN : alignof(T);
    offset = (staticSharedUsed() + a - 1) / a * a;
    staticSharedUsed() = offset + sizeof(T);
    if (staticSharedUsed() > STATIC_SHARED_BYTES) fail("the module's __shared__ variables exceed 48 KiB");
  }
  return *reinterpret_cast<T*>(arena() + offset);
}

} // namespace emu

// ---- CUDA intrinsics -------------------------------------------------------------------------

inline void __syncthreads() { emu::arriveAndWait(emu::block().blocks[emu::blockInCluster()], 1); }
inline int __syncthreads_and(int pred) { return emu::arriveAndWait(emu::block().blocks[emu::blockInCluster()], pred); }

template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  if (mask != 0xffffffffu || width != 32) emu::fail("__shfl_xor_sync: only full-warp shuffles are emulated");
  emu::WarpSlots& s = emu::exchange(0, emu::bits64(v));
  emu::warpSync();
  const T r = emu::fromBits64<T>(s.v[0][emu::lane() ^ (laneMask & 31)]);
  emu::warpSync();
  return r;
}

inline int __any_sync(unsigned mask, int pred) {
  if (mask != 0xffffffffu) emu::fail("__any_sync: only full-warp votes are emulated");
  emu::WarpSlots& s = emu::exchange(0, pred ? 1 : 0);
  emu::warpSync();
  int any = 0;
  for (int l = 0; l < 32; l++) any |= (int)s.v[0][l];
  emu::warpSync();
  return any;
}

// Blocks run one at a time and their threads one at a time: atomics need no atomicity.
template <class T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }

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

/** ex2.approx.ftz: results below the smallest normal float flush to zero. */
inline float exp2_ftz(float x) {
  const float y = exp2f(x);
  return y < 1.17549435e-38f ? 0.f : y;
}
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
  if (address % 16 != 0) fail("ldmatrix: a row address that is not 16-byte aligned");
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
  if ((uintptr_t)dst % size != 0 || (uintptr_t)src % size != 0) fail("cp.async: a source or destination not aligned to the copy's size");
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

inline void cluster_sync() { emu::arriveAndWait(emu::block().cluster, 1); }
/** p (shared memory of this block) in the cluster's block of that rank. */
inline float ld_cluster(const float* p, int rank) {
  if (rank < 0 || rank >= emu::block().clusterSize) emu::fail("ld_cluster: a rank outside the cluster");
  float v;
  std::memcpy(&v, emu::arenas[rank] + ((const unsigned char*)p - emu::arena()), 4);
  return v;
}

// ---- launching -----------------------------------------------------------------------------

namespace emu {

struct Kernel {
  const char* name;
  void* fn;
  void (*call)(void* fn, void** params);
  int cluster;  // blocks of a cluster along x (__cluster_dims__), 1 without
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
  template <class... A> Register(const char* name, void (*fn)(A...), int cx = 1, int cy = 1, int cz = 1)
      : k{name, (void*)fn, &Call<A...>::run, cy == 1 && cz == 1 ? cx : -1, kernels()} {
    kernels() = &k;
  }
};

inline Kernel* running = nullptr;
inline void** runningParams = nullptr;

inline void threadMain() {
  Block& b = block();
  running->call(running->fn, runningParams);
  // Returned: leave the barriers and never run again.
  b.fibers[b.current].done = true;
  leave(b.blocks[blockInCluster()]);
  leave(b.cluster);
  leave(b.warps[warp()]);
  b.progress++;
  void* unused;
  emu_switch(&unused, b.schedulerSp);
  __builtin_unreachable();
}

/** Stacks for every fiber, reserved once (pages are only committed as they are touched). */
inline unsigned char* stacks() {
  static unsigned char* base = nullptr;
  if (!base) {
    void* p = mmap(nullptr, STACK_BYTES * MAX_FIBERS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base = p == MAP_FAILED ? nullptr : (unsigned char*)p;
  }
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
  snprintf(failure(), 512, "%s (block %u,%u,%u thread %d)", what, blockIdx.x, blockIdx.y, blockIdx.z, b.current % b.threads);
  void* unused;
  // Back to the scheduler, which abandons the launch.
  b.progress = -1;
  emu_switch(&unused, b.schedulerSp);
  __builtin_unreachable();
}

inline void setThreadIdx(int f) {
  const Block& b = block();
  const unsigned t = (unsigned)(f % b.threads);
  threadIdx.x = t % blockDim.x;
  threadIdx.y = (t / blockDim.x) % blockDim.y;
  threadIdx.z = t / (blockDim.x * blockDim.y);
  blockIdx.x = b.firstBlockX + (unsigned)(f / b.threads);
}

/** Runs the blocks of one cluster (or one block) to completion; false (with failure() set) on a deadlock or a failed check. */
inline bool runBlocks(bool reverse, unsigned sharedBytes) {
  Block& b = block();
  const int n = b.threads * b.clusterSize;
  b.cluster = Barrier{};
  b.cluster.live = n;
  for (int k = 0; k < b.clusterSize; k++) {
    b.blocks[k] = Barrier{};
    b.blocks[k].live = b.threads;
    for (int w = 0; w < (b.threads + 31) / 32; w++) {
      Barrier& bw = b.warps[k * (MAX_THREADS / 32) + w];
      bw = Barrier{};
      bw.live = (w + 1) * 32 <= b.threads ? 32 : b.threads - w * 32;
    }
    // Shared memory holds whatever it held: all-ones bytes (NaN) show reads of what no thread wrote.
    std::memset(arenas[k], 0xff, STATIC_SHARED_BYTES + sharedBytes);
  }
  for (int f = 0; f < n; f++) {
    b.fibers[f] = Fiber{newStack(f), false};
    b.copyCount[f] = 0;
    b.openGroup[f] = 0;
  }
  b.progress = 0;
  int remaining = n;
  while (remaining > 0) {
    const long before = b.progress;
    for (int i = 0; i < n; i++) {
      const int f = reverse ? n - 1 - i : i;
      if (b.fibers[f].done) continue;
      b.current = f;
      setThreadIdx(f);
      emu_switch(&b.schedulerSp, b.fibers[f].sp);
      if (b.progress < 0) return false;
      if (b.fibers[f].done) remaining--;
    }
    if (remaining > 0 && b.progress == before) {
      int atBlock = 0;
      for (int k = 0; k < b.clusterSize; k++) atBlock += b.blocks[k].arrived;
      snprintf(failure(), 512, "deadlock in block %u,%u,%u: %d threads wait at barriers that cannot complete (%d at __syncthreads, %d at cluster barriers, the rest at warp-wide operations)",
               b.firstBlockX, blockIdx.y, blockIdx.z, remaining, atBlock, b.cluster.arrived);
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
  if (k->cluster < 1 || k->cluster > emu::MAX_CLUSTER) return refuse("only clusters of 1 to 8 blocks along x are emulated");
  if (grid[0] % k->cluster != 0) return refuse("the grid is not a whole number of clusters");
  if (!emu::stacks()) return refuse("cannot reserve the threads' stacks");
  gridDim = {grid[0], grid[1], grid[2]};
  blockDim = {blockDims[0], blockDims[1], blockDims[2]};
  emu::Block& b = emu::block();
  b.threads = (int)threads;
  b.clusterSize = k->cluster;
  emu::running = k;
  emu::runningParams = params;
  long index = 0;
  for (unsigned z = 0; z < grid[2]; z++)
    for (unsigned y = 0; y < grid[1]; y++)
      for (unsigned x = 0; x < grid[0]; x += k->cluster, index++) {
        blockIdx = {x, y, z};
        b.firstBlockX = x;
        if (!emu::runBlocks(index & 1, sharedBytes)) {
          snprintf(error, errorBytes, "%s: %s", name, emu::failure());
          return 1;
        }
      }
  return 0;
}
