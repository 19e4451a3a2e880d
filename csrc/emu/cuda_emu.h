// CUDA emulation: the built-ins the kernels of csrc/cuda use, supplied on the CPU so that the
// same .cu sources, compiled by the host compiler with FASTGAN_CUDA_EMU defined, run in CI
// where there is no GPU (csrc/cuda/runtime.cuh picks this header instead of CUDA's).
//
// A launch runs the blocks of the grid one after another; the threads of a block are fibers
// (csrc/emu/cuda_emu.cpp) that run until they reach a barrier (__syncthreads, __syncwarp, a
// warp shuffle), in an order that changes from launch to launch, so a missing barrier shows
// up as a wrong or non-repeatable result. __shared__ variables are shared by the fibers of a
// block and by nothing else that runs at the same time. What this cannot show: speed, the
// memory model of a real GPU, and what nvcc does differently from the host compiler.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../cuda/host_thread_key.h"

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace fastgan {
namespace emu {

// The emulated device: what the grid planners read (they size grids from it).
struct DeviceProps {
  int multiProcessorCount = 132;  // an H100 SXM
  int maxThreadsPerMultiProcessor = 2048;
  size_t sharedMemPerBlock = 48 * 1024;  // without an opt-in attribute, which fastgan never sets
};
DeviceProps& device_props();

// Scheduling and counters, for tests.
void set_seed(uint64_t seed);
struct Stats {
  uint64_t launches, blocks, threads;
  uint64_t finish_rounds;  // the most rounds any warp ran in one launch's last-block folds
};
Stats stats();
// Starts every counter (stats(), shared_stats()) from zero again.
void reset_stats();
// Counts a round of a last-block fold in the calling thread (FASTGAN_FINISH_ROUND): a launch's
// figure is the most that any thread counted (a warp runs as many rounds as its busiest lane).
void count_finish_round();

// The stream the calling host thread launches on: the legacy default stream, or (for tests of
// per-stream state) its per-thread default stream, whose handle is the same in every thread.
constexpr uintptr_t kLegacyStream = 0, kPerThreadStream = 2;  // the handles 0 (default) and cudaStreamPerThread
void use_per_thread_stream(bool on);
uintptr_t current_stream_handle();

// Shared-memory traffic as the GPU's banks would serve it. A lane's n-th shared access since
// its warp's last barrier (a __syncthreads or warp collective) belongs to the same instruction
// (request) as the n-th access of the warp's other lanes; a request costs as many wavefronts
// as the most distinct 4-byte words any one of the 32 banks must serve (a word read by several
// lanes is a broadcast, served once).
struct SharedStats {
  uint64_t requests, wavefronts;
};
SharedStats shared_stats();
// The same per launch, for the latest launches (oldest first, at most 4096 of them).
std::vector<SharedStats> shared_stats_per_launch();
// Records one access of `bytes` bytes at p by the calling thread, and fails the launch when p
// lies outside [begin, end), the array the access was made through.
void record_shared_access(const void* p, size_t bytes, const void* begin, const void* end);
// A shared array as a block first sees it: filled with 0xff bytes (a float reads as NaN), not
// the zeros or the previous block's values the host memory holds. *seen: the block that last
// filled it (0: none).
unsigned char* fresh_shared(unsigned char* bytes, size_t size, uint64_t* seen);

// Per-fiber and per-block coordinates, valid inside a running kernel only.
const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();

void syncthreads();
// Warp collectives: every lane of `mask` must reach the same call (checked).
void syncwarp(unsigned mask);
// Exchanges `size` bytes among the lanes of the calling warp: `out` receives what the lane
// `src_lane` passed as `in` (a lane outside the warp, or an absent one, reads its own).
void warp_exchange(unsigned mask, const void* in, void* out, size_t size, int src_lane);
int lane_id();
// Fails the launch when p is not a multiple of `bytes` (a vector access the GPU would fault on).
void check_aligned(const void* p, size_t bytes);

// Runs body() as every thread of every block of the grid.
void run_grid(dim3 grid, dim3 block, size_t dynamic_smem, const std::function<void()>& body, const char* name);

}  // namespace emu
}  // namespace fastgan

// --- Qualifiers and built-ins under their CUDA names ----------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One copy per block: the fibers of a block share their OS thread, and blocks run one at a time
// per OS thread. Kernels declare shared arrays with FASTGAN_SHARED (below), which counts and
// bounds-checks every access; plain __shared__ is left for the emulation's own self-tests.
#define __shared__ static thread_local
#define threadIdx (::fastgan::emu::thread_idx())
#define blockIdx (::fastgan::emu::block_idx())
#define blockDim (::fastgan::emu::block_dim())
#define gridDim (::fastgan::emu::grid_dim())

inline void __syncthreads() { ::fastgan::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::fastgan::emu::syncwarp(mask); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// libcu++'s atomic_ref, as much of it as the kernels use (integers, device scope).
namespace cuda {
enum thread_scope { thread_scope_system, thread_scope_device, thread_scope_block, thread_scope_thread };
enum memory_order {
  memory_order_relaxed = __ATOMIC_RELAXED,
  memory_order_acquire = __ATOMIC_ACQUIRE,
  memory_order_release = __ATOMIC_RELEASE,
  memory_order_acq_rel = __ATOMIC_ACQ_REL,
  memory_order_seq_cst = __ATOMIC_SEQ_CST
};
template <typename T, thread_scope Scope = thread_scope_system>
class atomic_ref {
  static_assert(std::is_integral<T>::value, "emulated atomic_ref: integers only");

 public:
  explicit atomic_ref(T& ref) : p_(&ref) {}
  T fetch_add(T v, memory_order order = memory_order_seq_cst) const { return __atomic_fetch_add(p_, v, int(order)); }
  T load(memory_order order = memory_order_seq_cst) const { return __atomic_load_n(p_, int(order)); }
  void store(T v, memory_order order = memory_order_seq_cst) const { __atomic_store_n(p_, v, int(order)); }

 private:
  T* p_;
};
}  // namespace cuda

template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}

template <typename T>
inline T atomicAdd(T* address, T value) {
  static_assert(std::is_integral<T>::value,
                "emulated atomicAdd: integers only (fastgan reductions avoid float atomics)");
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}

namespace fastgan {
namespace emu {
template <typename T>
inline T shuffle_from(unsigned mask, T v, int src_lane) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "emulated shuffle: small trivial types");
  T out;
  warp_exchange(mask, &v, &out, sizeof(T), src_lane);
  return out;
}
// The first lane of the `width`-lane segment the calling lane is in.
inline int segment_start(int width) { return lane_id() & ~(width - 1); }
}  // namespace emu
}  // namespace fastgan

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::fastgan::emu::shuffle_from(mask, v, ::fastgan::emu::segment_start(width) + (src_lane & (width - 1)));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::fastgan::emu::lane_id(), end = ::fastgan::emu::segment_start(width) + width;
  return ::fastgan::emu::shuffle_from(mask, v, lane + int(delta) < end ? lane + int(delta) : lane);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::fastgan::emu::lane_id(), start = ::fastgan::emu::segment_start(width);
  return ::fastgan::emu::shuffle_from(mask, v, lane - int(delta) >= start ? lane - int(delta) : lane);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::fastgan::emu::lane_id(), start = ::fastgan::emu::segment_start(width);
  const int src = lane ^ lane_mask;
  return ::fastgan::emu::shuffle_from(mask, v, src >= start && src < start + width ? src : lane);
}

// --- Host side: what csrc/cuda/runtime.cuh supplies from CUDA in the real build -------------
#define FASTGAN_DEVICE_LIBRARY fastgan_emu
#define FASTGAN_DEVICE_KEY CPU
#define FASTGAN_SHARED(T, name, count)                                             \
  alignas(16) static thread_local unsigned char name##_bytes[sizeof(T) * (count)]; \
  static thread_local uint64_t name##_block = 0;                                   \
  const ::fastgan::cuda::Shared<T> name(                                           \
      reinterpret_cast<T*>(::fastgan::emu::fresh_shared(name##_bytes, sizeof(name##_bytes), &name##_block)), (count))
// x86 forgives a misaligned 16-byte access; a GPU does not ("misaligned address"), so say so.
#define FASTGAN_CHECK_ALIGNED(ptr, bytes) ::fastgan::emu::check_aligned(ptr, bytes)
#define FASTGAN_FINISH_ROUND() ::fastgan::emu::count_finish_round()

namespace fastgan {
namespace cuda {

// A pointer into shared memory (Shared<T>; T* in the CUDA build) and the element it names
// (SharedRef<T>; T& there): every load and store through them is recorded (bank conflicts,
// bounds), so kernels reach shared memory through nothing else.
template <typename T>
class SharedRef {
 public:
  SharedRef(T* p, const T* begin, const T* end) : p_(p), begin_(begin), end_(end) {}
  operator T() const {
    emu::record_shared_access(p_, sizeof(T), begin_, end_);
    return *p_;
  }
  SharedRef& operator=(const T& v) {
    emu::record_shared_access(p_, sizeof(T), begin_, end_);
    *p_ = v;
    return *this;
  }
  SharedRef& operator=(const SharedRef& o) { return *this = T(o); }

 private:
  T* p_;
  const T *begin_, *end_;
};

template <typename T>
class Shared {
 public:
  Shared(T* begin, size_t count) : begin_(begin), end_(begin + count) {}
  SharedRef<T> operator[](int64_t i) const { return SharedRef<T>(begin_ + i, begin_, end_); }

 private:
  T *begin_, *end_;
};

struct Stream {
  uintptr_t handle;
};
inline Stream current_stream() { return {emu::current_stream_handle()}; }
inline const emu::DeviceProps* device_props() { return &emu::device_props(); }
// As runtime.cuh's: the per-thread default stream is a different stream in each host thread.
inline uint64_t stream_key(Stream s) {
  return s.handle == emu::kPerThreadStream ? per_host_thread_key() : uint64_t(s.handle);
}
inline bool stream_is_capturing() { return false; }

// The emulated kernels run on CPU tensors; there is no device to select.
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};

// kernel<<<grid, block, smem, stream>>>(args...). Each thread gets its own copy of the
// arguments, as kernel parameters are on a GPU.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Stream, Args&&... args) {
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  emu::run_grid(grid, block, smem, [&] { std::apply(kernel, params); }, __PRETTY_FUNCTION__);
}

}  // namespace cuda
}  // namespace fastgan
