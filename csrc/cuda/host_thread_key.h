// A key for per-stream state on the calling host thread's per-thread default stream, shared by
// the CUDA build (runtime.cuh) and its emulation (csrc/emu/cuda_emu.h).
#pragma once

#include <atomic>
#include <cstdint>

namespace fastgan {
namespace cuda {
// A stream key for the calling host thread's per-thread default stream (cudaStreamPerThread):
// unique to the thread, with the top bit set so that it meets no other kind of key. A thread
// that ends leaves its key's state behind (the ticket counters: 256 bytes), as a destroyed
// stream does.
inline uint64_t per_host_thread_key() {
  static std::atomic<uint64_t> next{0};
  thread_local const uint64_t key = (uint64_t(1) << 63) | next.fetch_add(1);
  return key;
}
}  // namespace cuda
}  // namespace fastgan
