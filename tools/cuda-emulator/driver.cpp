// The host side of the CUDA emulator: one shared library with the entry points of libcuda,
// libnvrtc and libcublas that src/backend/cuda/ffi.ts binds, running everything on the CPU.
// "Device" memory is host memory; "NVRTC" compiles a kernel module with g++ against
// device-runtime.h into a shared object, which is the module image the backend caches and
// loads; a launch runs each block's threads as fibers (see device-runtime.h); cuBLAS is a plain
// f32-accumulating product. Work is done when it is queued, so streams and events only keep
// time. Built by build.ts with SQLORA_EMU_RUNTIME (the header's path) and SQLORA_EMU_VERSION.
#include <dlfcn.h>
#include <elf.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#define API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int SUCCESS = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_FOUND = 500, LAUNCH_FAILED = 719, INVALID_IMAGE = 200;
/**
 * The emulated GPU: compute capability 8.0 with an A100's shared memory, or with
 * SQLORA_CUDA_EMULATOR_CC=90 9.0 with an H100's (where the backend uses thread block clusters).
 */
constexpr int SMS = 16, DEFAULT_SHARED = 48 * 1024;
int computeCapability() {
  const char* cc = getenv("SQLORA_CUDA_EMULATOR_CC");
  return cc && std::string(cc) == "90" ? 90 : 80;
}
int maxSharedOptin() { return computeCapability() == 90 ? 232448 : 166912; }
/**
 * SQLORA_CUDA_EMULATOR_SKIP=1: launches and cuBLAS products are checked and then not run (their
 * outputs keep what they held), so the host's own cost of queuing work can be profiled without a
 * GPU (node --cpu-prof); nothing computed means anything then.
 */
bool skipWork() {
  static const bool skip = [] {
    const char* s = getenv("SQLORA_CUDA_EMULATOR_SKIP");
    return s != nullptr && std::string(s) == "1";
  }();
  return skip;
}
constexpr size_t TOTAL_MEMORY = size_t(8) << 30;

std::string lastFailure;

std::map<uint64_t, size_t>& allocations() {
  static std::map<uint64_t, size_t> m;
  return m;
}
size_t allocatedBytes = 0;

/** Whether [p, p + n) lies inside one allocation (device memory) or is host memory of the caller's. */
bool isDeviceRange(uint64_t p, size_t n) {
  auto& m = allocations();
  auto it = m.upper_bound(p);
  if (it == m.begin()) return false;
  --it;
  return p >= it->first && p + n <= it->first + it->second;
}

struct Module {
  void* handle;
  int (*launch)(const char*, const unsigned*, const unsigned*, unsigned, void**, char*, int);
  int (*has)(const char*);
};
struct Function {
  Module* module;
  std::string name;
  int maxShared = DEFAULT_SHARED;
};

double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace

// ---- driver API ----------------------------------------------------------------------------

API int cuInit(unsigned) { return SUCCESS; }

API int cuGetErrorName(int err, const char** name) {
  static std::string text;
  switch (err) {
    case SUCCESS: text = "CUDA_SUCCESS"; break;
    case INVALID_VALUE: text = "CUDA_ERROR_INVALID_VALUE"; break;
    case OUT_OF_MEMORY: text = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case INVALID_IMAGE: text = "CUDA_ERROR_INVALID_IMAGE"; break;
    case NOT_FOUND: text = "CUDA_ERROR_NOT_FOUND"; break;
    case LAUNCH_FAILED: text = "CUDA_ERROR_LAUNCH_FAILED"; break;
    default: return INVALID_VALUE;
  }
  if (err != SUCCESS && !lastFailure.empty()) text += " (emulator: " + lastFailure + ")";
  *name = text.c_str();
  return SUCCESS;
}

API int cuDeviceGetCount(int* count) { *count = 1; return SUCCESS; }
API int cuDeviceGet(int* dev, int ordinal) { if (ordinal != 0) return INVALID_VALUE; *dev = 0; return SUCCESS; }
API int cuDeviceGetName(char* name, int len, int) {
  snprintf(name, len, "sqlora CUDA emulator (CPU)");
  return SUCCESS;
}
API int cuDeviceGetAttribute(int* value, int attrib, int) {
  switch (attrib) {
    case 16: *value = SMS; return SUCCESS;
    case 75: *value = computeCapability() / 10; return SUCCESS;
    case 76: *value = computeCapability() % 10; return SUCCESS;
    case 97: *value = maxSharedOptin(); return SUCCESS;
    default: lastFailure = "device attribute " + std::to_string(attrib) + " is not emulated"; return INVALID_VALUE;
  }
}
API int cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = TOTAL_MEMORY; return SUCCESS; }
// The CUDA version of the driver API it follows (12.8), and the memory not yet allocated.
API int cuDriverGetVersion(int* version) { *version = 12080; return SUCCESS; }
API int cuMemGetInfo_v2(size_t* freeBytes, size_t* totalBytes) {
  *freeBytes = TOTAL_MEMORY - allocatedBytes;
  *totalBytes = TOTAL_MEMORY;
  return SUCCESS;
}
API int cuDevicePrimaryCtxRetain(void** ctx, int) { static int context; *ctx = &context; return SUCCESS; }
API int cuCtxSetCurrent(void*) { return SUCCESS; }
API int cuStreamCreate(void** stream, unsigned) { static int s; *stream = &s; return SUCCESS; }
API int cuStreamSynchronize(void*) { return SUCCESS; }

API int cuMemAlloc_v2(uint64_t* dptr, size_t bytes) {
  if (bytes == 0) return INVALID_VALUE;
  if (allocatedBytes + bytes > TOTAL_MEMORY) return OUT_OF_MEMORY;
  const size_t rounded = (bytes + 255) & ~size_t(255);
  void* p = aligned_alloc(256, rounded);
  if (!p) return OUT_OF_MEMORY;
  // cuMemAlloc leaves memory as it was; all-ones bytes (NaN in every float format) make a kernel
  // that reads what nobody wrote visible in its results.
  memset(p, 0xff, rounded);
  allocations()[(uint64_t)p] = bytes;
  allocatedBytes += bytes;
  *dptr = (uint64_t)p;
  return SUCCESS;
}
API int cuMemFree_v2(uint64_t dptr) {
  auto it = allocations().find(dptr);
  if (it == allocations().end()) { lastFailure = "cuMemFree of an address that cuMemAlloc did not return"; return INVALID_VALUE; }
  allocatedBytes -= it->second;
  allocations().erase(it);
  free((void*)dptr);
  return SUCCESS;
}

static int checkedCopy(uint64_t dst, bool dstDevice, uint64_t src, bool srcDevice, size_t bytes, const char* what) {
  if ((dstDevice && !isDeviceRange(dst, bytes)) || (srcDevice && !isDeviceRange(src, bytes))) {
    lastFailure = std::string(what) + " of " + std::to_string(bytes) + " bytes outside any allocation";
    return INVALID_VALUE;
  }
  memmove((void*)dst, (const void*)src, bytes);
  return SUCCESS;
}
API int cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t bytes, void*) { return checkedCopy(dst, true, (uint64_t)src, false, bytes, "cuMemcpyHtoD"); }
API int cuMemcpyDtoHAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void*) { return checkedCopy(dst, false, src, true, bytes, "cuMemcpyDtoH"); }
API int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void*) { return checkedCopy(dst, true, src, true, bytes, "cuMemcpyDtoD"); }

template <class T> static int fill(uint64_t dst, T value, size_t count) {
  if (!isDeviceRange(dst, count * sizeof(T))) { lastFailure = "cuMemset outside any allocation"; return INVALID_VALUE; }
  T* p = (T*)dst;
  for (size_t i = 0; i < count; i++) p[i] = value;
  return SUCCESS;
}
API int cuMemsetD8Async(uint64_t dst, uint8_t value, size_t count, void*) { return fill(dst, value, count); }
API int cuMemsetD16Async(uint64_t dst, uint16_t value, size_t count, void*) { return fill(dst, value, count); }
API int cuMemsetD32Async(uint64_t dst, uint32_t value, size_t count, void*) { return fill(dst, value, count); }

API int cuMemAllocHost_v2(void** ptr, size_t bytes) {
  *ptr = aligned_alloc(256, (bytes + 255) & ~size_t(255));
  return *ptr ? SUCCESS : OUT_OF_MEMORY;
}

/** The image is the module's shared object (its length from the ELF header: section headers come last). */
API int cuModuleLoadData(void** module, const void* image) {
  const auto* eh = (const Elf64_Ehdr*)image;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) {
    lastFailure = "the module image is not one the emulated NVRTC made";
    return INVALID_IMAGE;
  }
  const size_t size = eh->e_shoff + size_t(eh->e_shnum) * eh->e_shentsize;
  char path[] = "/tmp/sqlora-emu-module-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return INVALID_IMAGE;
  const bool written = write(fd, image, size) == (ssize_t)size;
  close(fd);
  void* handle = written ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : nullptr;
  unlink(path);
  if (!handle) { lastFailure = std::string("loading the module: ") + (written ? dlerror() : "cannot write a temporary file"); return INVALID_IMAGE; }
  auto* m = new Module{handle, (decltype(Module::launch))dlsym(handle, "sqlora_emu_launch"), (decltype(Module::has))dlsym(handle, "sqlora_emu_has")};
  if (!m->launch || !m->has) { lastFailure = "the module was not built by the emulated NVRTC"; return INVALID_IMAGE; }
  *module = m;
  return SUCCESS;
}

API int cuModuleGetFunction(void** fn, void* module, const char* name) {
  auto* m = (Module*)module;
  if (!m->has(name)) { lastFailure = std::string("no kernel ") + name + " in the module"; return NOT_FOUND; }
  *fn = new Function{m, name};
  return SUCCESS;
}

API int cuFuncSetAttribute(void* fn, int attrib, int value) {
  if (attrib != 8) { lastFailure = "function attribute " + std::to_string(attrib) + " is not emulated"; return INVALID_VALUE; }
  if (value > maxSharedOptin()) { lastFailure = "more dynamic shared memory than the device allows"; return INVALID_VALUE; }
  ((Function*)fn)->maxShared = value;
  return SUCCESS;
}

API int cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem, void*,
                       void** params, void**) {
  auto* f = (Function*)fn;
  if ((int)shmem > f->maxShared) {
    lastFailure = f->name + ": " + std::to_string(shmem) + " bytes of dynamic shared memory, above its limit of " + std::to_string(f->maxShared) + " (cuFuncSetAttribute raises it)";
    return INVALID_VALUE;
  }
  if (gx == 0 || gy == 0 || gz == 0) { lastFailure = f->name + ": an empty grid"; return INVALID_VALUE; }
  if (skipWork()) return SUCCESS;
  const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
  char error[512];
  if (f->module->launch(f->name.c_str(), grid, block, shmem, params, error, sizeof error) != 0) {
    lastFailure = error;
    fprintf(stderr, "CUDA emulator: %s\n", error);
    return LAUNCH_FAILED;
  }
  return SUCCESS;
}

API int cuEventCreate(void** event, unsigned) { *event = new double(0); return SUCCESS; }
API int cuEventRecord(void* event, void*) { *(double*)event = nowMs(); return SUCCESS; }
API int cuEventSynchronize(void*) { return SUCCESS; }
API int cuEventElapsedTime(float* ms, void* start, void* end) { *ms = (float)(*(double*)end - *(double*)start); return SUCCESS; }

// ---- NVRTC ---------------------------------------------------------------------------------

namespace {
struct Program {
  std::string source, name, log;
  std::vector<char> image;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n"), b = s.find_last_not_of(" \t\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

/**
 * A __shared__ declaration ("__shared__ [__align__(N)] TYPE a[..], b;") as references into the
 * running block's shared memory, one offset per declared variable (laid out on first use).
 */
std::string sharedVariables(const std::string& align, const std::string& decl, int& counter) {
  // The declarators start at the identifier before the first '[' or ',' (or the end).
  size_t p = decl.find_first_of("[,");
  if (p == std::string::npos) p = decl.size();
  while (p > 0 && isspace((unsigned char)decl[p - 1])) p--;
  size_t q = p;
  while (q > 0 && (isalnum((unsigned char)decl[q - 1]) || decl[q - 1] == '_')) q--;
  const std::string type = trim(decl.substr(0, q));
  std::string out, rest = decl.substr(q);
  std::stringstream list(rest);
  std::string one;
  while (std::getline(list, one, ',')) {
    one = trim(one);
    size_t n = 0;
    while (n < one.size() && (isalnum((unsigned char)one[n]) || one[n] == '_')) n++;
    const std::string name = one.substr(0, n), dims = one.substr(n), slot = "sqlora_emu_shared_" + std::to_string(counter++);
    out += "static size_t " + slot + " = SIZE_MAX; auto& " + name + " = emu::sharedVariable<" + type + dims + ", " + (align.empty() ? "1" : align) + ">(" + slot + ");";
  }
  return out;
}

/**
 * The module's CUDA C as host C++: __shared__ variables and dynamic shared memory live in the
 * running block's arena, and each kernel is registered by name (with its cluster size).
 */
std::string hostSource(const std::string& cuda) {
  static const std::regex dynamicShared(R"(extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;)");
  const std::string withDynamic = std::regex_replace(cuda, dynamicShared, "$1* const $2 = ($1*)emu::dynamicShared();");
  static const std::regex shared(R"(__shared__\s+(?:__align__\((\d+)\)\s+)?([^;]+);)");
  std::string out;
  int counter = 0;
  auto from = withDynamic.cbegin();
  for (std::sregex_iterator it(withDynamic.begin(), withDynamic.end(), shared), end; it != end; ++it) {
    out.append(from, (*it)[0].first);
    out += sharedVariables((*it)[1], (*it)[2], counter);
    from = (*it)[0].second;
  }
  out.append(from, withDynamic.cend());
  static const std::regex kernel(R"(extern "C" __global__ void ((?:(?:__launch_bounds__|__cluster_dims__)\([^)]*\)\s+)*)(\w+)\()");
  static const std::regex clusterDims(R"(__cluster_dims__\(([^)]*)\))");
  out += "\n";
  for (auto it = std::sregex_iterator(cuda.begin(), cuda.end(), kernel); it != std::sregex_iterator(); ++it) {
    const std::string attributes = (*it)[1], name = (*it)[2];
    std::smatch dims;
    const std::string cluster = std::regex_search(attributes, dims, clusterDims) ? ", " + dims[1].str() : "";
    out += "static emu::Register sqlora_emu_register_" + name + "(\"" + name + "\", &" + name + cluster + ");\n";
  }
  return out;
}
} // namespace

API int nvrtcVersion(int* major, int* minor) {
  // The cache key of compiled modules (nvrtc.ts): a changed runtime header never reuses a stale one.
  *major = 0;
  *minor = SQLORA_EMU_VERSION;
  return SUCCESS;
}
API const char* nvrtcGetErrorString(int rc) { return rc == 0 ? "NVRTC_SUCCESS" : rc == 6 ? "NVRTC_ERROR_COMPILATION" : "NVRTC_ERROR"; }
API int nvrtcGetNumSupportedArchs(int* n) { *n = 2; return SUCCESS; }
API int nvrtcGetSupportedArchs(int* archs) { archs[0] = 80; archs[1] = 90; return SUCCESS; }

API int nvrtcCreateProgram(void** prog, const char* src, const char* name, int, void*, void*) {
  *prog = new Program{src, name ? name : "module.cu", "", {}};
  return SUCCESS;
}
API int nvrtcDestroyProgram(void** prog) {
  delete (Program*)*prog;
  *prog = nullptr;
  return SUCCESS;
}

/**
 * g++ builds the module as a shared object; NVRTC's options (architecture, -lineinfo) do not
 * apply. Hidden symbols and no STB_GNU_UNIQUE: two loaded modules (one per backend) must not
 * share the runtime's state, which unique symbols of inline functions would do across dlopen.
 * A misaligned access (a 16-byte load from an address that is not a multiple of 16, say) stops
 * the process with the sanitizer's report, as it would fault on a GPU.
 */
API int nvrtcCompileProgram(void* prog, int, const char**) {
  auto* p = (Program*)prog;
  char dir[] = "/tmp/sqlora-emu-nvrtc-XXXXXX";
  if (!mkdtemp(dir)) { p->log = "cannot make a temporary folder"; return 6; }
  const std::string src = std::string(dir) + "/module.cpp", lib = std::string(dir) + "/module.so", log = std::string(dir) + "/log";
  // Compiler messages and the sanitizer's reports name the module's CUDA source and its lines.
  std::ofstream(src) << "#line 1 \"" << p->name << "\"\n" << hostSource(p->source);
  const std::string cmd = "g++ -std=c++17 -O1 -fPIC -shared -w -fvisibility=hidden -fno-gnu-unique -fsanitize=alignment -fno-sanitize-recover=alignment -include '" SQLORA_EMU_RUNTIME "' -o '" + lib + "' '" + src + "' > '" + log + "' 2>&1";
  const int rc = system(cmd.c_str());
  p->log = readFile(log);
  if (rc == 0) {
    const std::string image = readFile(lib);
    p->image.assign(image.begin(), image.end());
  }
  system(("rm -rf '" + std::string(dir) + "'").c_str());
  if (rc != 0) {
    p->log = p->name + " (compiled by g++ for the CUDA emulator):\n" + p->log;
    return 6;
  }
  return SUCCESS;
}
API int nvrtcGetProgramLogSize(void* prog, size_t* size) { *size = ((Program*)prog)->log.size() + 1; return SUCCESS; }
API int nvrtcGetProgramLog(void* prog, char* log) { const auto& s = ((Program*)prog)->log; memcpy(log, s.c_str(), s.size() + 1); return SUCCESS; }
API int nvrtcGetCUBINSize(void* prog, size_t* size) { *size = ((Program*)prog)->image.size(); return SUCCESS; }
API int nvrtcGetCUBIN(void* prog, char* out) { const auto& v = ((Program*)prog)->image; memcpy(out, v.data(), v.size()); return SUCCESS; }
API int nvrtcGetPTXSize(void*, size_t*) { return 6; }
API int nvrtcGetPTX(void*, char*) { return 6; }

// ---- cuBLAS --------------------------------------------------------------------------------

namespace {
constexpr int CUBLAS_SUCCESS = 0, CUBLAS_INVALID_VALUE = 7, CUBLAS_NOT_SUPPORTED = 15;
constexpr int R_32F = 0, R_16F = 2, R_16BF = 14, COMPUTE_32F = 68;

float load(const void* p, int type, size_t i) {
  if (type == R_32F) return ((const float*)p)[i];
  uint16_t h = ((const uint16_t*)p)[i];
  if (type == R_16BF) { uint32_t u = uint32_t(h) << 16; float f; memcpy(&f, &u, 4); return f; }
  _Float16 f; memcpy(&f, &h, 2); return (float)f;
}
void store(void* p, int type, size_t i, float v) {
  if (type == R_32F) { ((float*)p)[i] = v; return; }
  uint16_t h;
  if (type == R_16BF) {
    uint32_t x; memcpy(&x, &v, 4);
    h = (x & 0x7fffffffu) > 0x7f800000u ? uint16_t((x >> 16) | 0x40u) : uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  } else {
    _Float16 f = (_Float16)v; memcpy(&h, &f, 2);
  }
  ((uint16_t*)p)[i] = h;
}
bool knownType(int t) { return t == R_32F || t == R_16F || t == R_16BF; }

/** Column-major C = alpha op(A) op(B) + beta C with f32 accumulation; C is not read when beta is 0. */
void gemm(int ta, int tb, int m, int n, int k, float alpha, const void* A, int at, int lda, const void* B, int bt, int ldb, float beta, void* C,
          int ct, int ldc) {
  std::vector<float> a(size_t(m) * k), b(size_t(n) * k);
  for (int i = 0; i < m; i++)
    for (int l = 0; l < k; l++) a[size_t(i) * k + l] = load(A, at, ta ? size_t(i) * lda + l : size_t(l) * lda + i);
  for (int j = 0; j < n; j++)
    for (int l = 0; l < k; l++) b[size_t(j) * k + l] = load(B, bt, tb ? size_t(l) * ldb + j : size_t(j) * ldb + l);
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      float acc = 0;
      const float *ar = &a[size_t(i) * k], *br = &b[size_t(j) * k];
      for (int l = 0; l < k; l++) acc += ar[l] * br[l];
      const size_t ci = size_t(j) * ldc + i;
      store(C, ct, ci, beta == 0 ? alpha * acc : alpha * acc + beta * load(C, ct, ci));
    }
}
int checkGemm(int ta, int tb, int at, int bt, int ct, int compute, int algo) {
  if (!knownType(at) || !knownType(bt) || !knownType(ct) || compute != COMPUTE_32F || algo != -1) return CUBLAS_NOT_SUPPORTED;
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1)) return CUBLAS_INVALID_VALUE;
  return CUBLAS_SUCCESS;
}
size_t typeBytes(int t) { return t == R_32F ? 4 : 2; }
} // namespace

API int cublasCreate_v2(void** handle) { static int h; *handle = &h; return CUBLAS_SUCCESS; }
API int cublasSetStream_v2(void*, void*) { return CUBLAS_SUCCESS; }
API int cublasGetProperty(int type, int* value) {
  if (type < 0 || type > 2) return CUBLAS_INVALID_VALUE;
  *value = type == 0 ? 12 : type == 1 ? 8 : 0;  // as cuBLAS 12.8.0
  return CUBLAS_SUCCESS;
}
API const char* cublasGetStatusString(int status) {
  return status == CUBLAS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : status == CUBLAS_NOT_SUPPORTED ? "CUBLAS_STATUS_NOT_SUPPORTED" : "CUBLAS_STATUS_INVALID_VALUE";
}

API int cublasGemmEx(void*, int ta, int tb, int m, int n, int k, const float* alpha, uint64_t A, int at, int lda, uint64_t B, int bt, int ldb,
                     const float* beta, uint64_t C, int ct, int ldc, int compute, int algo) {
  if (int rc = checkGemm(ta, tb, at, bt, ct, compute, algo)) return rc;
  if (skipWork()) return CUBLAS_SUCCESS;
  gemm(ta, tb, m, n, k, *alpha, (const void*)A, at, lda, (const void*)B, bt, ldb, *beta, (void*)C, ct, ldc);
  return CUBLAS_SUCCESS;
}
API int cublasGemmStridedBatchedEx(void*, int ta, int tb, int m, int n, int k, const float* alpha, uint64_t A, int at, int lda, int64_t sa,
                                   uint64_t B, int bt, int ldb, int64_t sb, const float* beta, uint64_t C, int ct, int ldc, int64_t sc, int batch,
                                   int compute, int algo) {
  if (int rc = checkGemm(ta, tb, at, bt, ct, compute, algo)) return rc;
  if (skipWork()) return CUBLAS_SUCCESS;
  for (int i = 0; i < batch; i++)
    gemm(ta, tb, m, n, k, *alpha, (const char*)A + sa * i * typeBytes(at), at, lda, (const char*)B + sb * i * typeBytes(bt), bt, ldb, *beta,
         (char*)C + sc * i * typeBytes(ct), ct, ldc);
  return CUBLAS_SUCCESS;
}
API int cublasGemmBatchedEx(void*, int ta, int tb, int m, int n, int k, const float* alpha, uint64_t As, int at, int lda, uint64_t Bs, int bt,
                            int ldb, const float* beta, uint64_t Cs, int ct, int ldc, int batch, int compute, int algo) {
  if (int rc = checkGemm(ta, tb, at, bt, ct, compute, algo)) return rc;
  if (skipWork()) return CUBLAS_SUCCESS;
  const auto *a = (const uint64_t*)As, *b = (const uint64_t*)Bs, *c = (const uint64_t*)Cs;
  for (int i = 0; i < batch; i++) gemm(ta, tb, m, n, k, *alpha, (const void*)a[i], at, lda, (const void*)b[i], bt, ldb, *beta, (void*)c[i], ct, ldc);
  return CUBLAS_SUCCESS;
}
