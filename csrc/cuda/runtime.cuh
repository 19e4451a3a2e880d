// What the CUDA kernels' host code needs from the CUDA runtime: a stream, a device guard,
// the device's properties and a kernel launch. The emulation build (FASTGAN_CUDA_EMU, tests
// only) takes all of it, and the device built-ins, from csrc/emu/cuda_emu.h instead, so the
// kernel files themselves are the same in both builds.
#pragma once

#include "host_thread_key.h"

#ifdef FASTGAN_CUDA_EMU
#include "../emu/cuda_emu.h"
#else
#include <ATen/cuda/CUDAContext.h>
#include <cuda/atomic>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <utility>

// Where the kernels are registered: the fastgan library's CUDA key (the emulation
// registers them as fastgan_emu's CPU kernels).
#define FASTGAN_DEVICE_LIBRARY fastgan
#define FASTGAN_DEVICE_KEY CUDA
// Shared arrays are reached through Shared<T> (below: a plain pointer here; in the emulation a
// pointer that records each access, to count bank conflicts and check bounds). Raw bytes, so
// that types with default member initialisers can live in shared memory. (No kernel uses
// dynamic shared memory: every array's size is known at compile time.)
#define FASTGAN_SHARED(T, name, count)                                      \
  __shared__ __align__(16) unsigned char name##_bytes[sizeof(T) * (count)]; \
  const ::fastgan::cuda::Shared<T> name = reinterpret_cast<T*>(name##_bytes)
// A vector access must be aligned to its size; the GPU faults if not (the emulation checks it).
#define FASTGAN_CHECK_ALIGNED(ptr, bytes)
// One round of a last-block fold (common.cuh fold_partials): the emulation counts them per warp.
#define FASTGAN_FINISH_ROUND()

namespace fastgan {
namespace cuda {

template <typename T>
using Shared = T*;
using Stream = cudaStream_t;
using DeviceGuard = c10::cuda::CUDAGuard;
inline Stream current_stream() { return at::cuda::getCurrentCUDAStream(); }
inline const cudaDeviceProp* device_props() { return at::cuda::getCurrentDeviceProperties(); }
// A key for per-stream state that no other stream ever shares. A raw handle is not one: a
// destroyed stream's handle can be handed to a new stream while the old one's last kernel
// still runs (torch.cuda.ExternalStream wraps such streams), and the two would then share the
// state. cudaStreamGetId's ids are unique for the life of the program. The legacy default
// stream is never destroyed, and asking about it fails while another thread captures in global
// mode, so it keeps its handle (0 or 1). cudaStreamPerThread is one handle for a different
// stream in every host thread: kernels of two threads on it run concurrently, so each host
// thread gets a key of its own (per_host_thread_key).
inline uint64_t stream_key(Stream s) {
  if (s == cudaStreamPerThread) return per_host_thread_key();
  if (s == nullptr || s == cudaStreamLegacy) return reinterpret_cast<uintptr_t>(s);
#if CUDART_VERSION >= 12000
  unsigned long long id = 0;
  C10_CUDA_CHECK(cudaStreamGetId(s, &id));
  return 16 + id;
#else
  return reinterpret_cast<uintptr_t>(s);  // before CUDA 12 an external stream must outlive its last kernel
#endif
}
inline bool stream_is_capturing() {
  const cudaStream_t stream = current_stream();
  // The legacy default stream cannot be captured, and asking about it fails while another
  // thread captures in global mode (cudaErrorStreamCaptureImplicit).
  if (stream == nullptr || stream == cudaStreamLegacy) return false;
  cudaStreamCaptureStatus status;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// kernel<<<grid, block, smem, stream>>>(args...), with the launch error checked.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Stream stream, Args&&... args) {
  // clang-format reads .cuh as C++ and would split the launch's >>>.
  // clang-format off
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
  // clang-format on
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace fastgan
#endif
