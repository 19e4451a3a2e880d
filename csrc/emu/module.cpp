// The test-only library of emulated CUDA kernels: torch.ops.fastgan_emu.* has the schemas of
// the kernel ops of torch.ops.fastgan and runs csrc/cuda's kernels on CPU tensors, so it
// never shadows the real CPU kernels. Built by tests/emu.py.
#include <torch/extension.h>

#include "../op_list.h"
#include "cuda_emu.h"
#include "../cuda/common.cuh"

namespace fastgan {
namespace emu {
at::Tensor selftest_block_sum(int64_t blocks, bool with_barrier);  // selftest.cpp
void selftest_deadlock();
void selftest_misaligned_load();
int64_t selftest_next_pow2(int64_t v);
std::pair<int64_t, int64_t> selftest_shared_stride(int64_t stride, int64_t bytes, int64_t reach);
}  // namespace emu
}  // namespace fastgan

TORCH_LIBRARY(fastgan_emu, m) { fastgan::op::define_ops(m, /*with_layers=*/false); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace fastgan::emu;
  m.doc() = "fastgan's CUDA kernels run on the CPU by an emulation of the CUDA built-ins (tests only)";
  m.def("set_seed", &set_seed, "Seed of the thread and block orders (each launch derives its own from it)");
  m.def(
      "stats",
      [] {
        const Stats s = stats();
        pybind11::dict d;
        d["launches"] = s.launches;
        d["blocks"] = s.blocks;
        d["threads"] = s.threads;
        d["finish_rounds"] = s.finish_rounds;
        return d;
      },
      "Kernel launches, blocks and threads run since the module was loaded (or reset_stats()), and "
      "finish_rounds: the most rounds of loads any warp ran in series in one launch's last-block folds");
  m.def("reset_stats", &reset_stats, "Starts every counter of stats() and shared_stats() from zero again");
  m.def("use_per_thread_stream", &use_per_thread_stream,
        "Launches of the calling host thread go to its "
        "per-thread default stream (one handle for a different stream in each thread), or back to the legacy one",
        pybind11::arg("on"));
  m.def(
      "ticket_buffer", [](const at::Tensor& like) { return fastgan::cuda::reduction_tickets(like, 1); },
      "The ticket counters the calling host thread's current stream reduces with (csrc/cuda/reduction_tickets.cu)");
  const auto shared_dict = [](const SharedStats& s) {
    pybind11::dict d;
    d["requests"] = s.requests;
    d["wavefronts"] = s.wavefronts;
    return d;
  };
  m.def(
      "shared_stats", [shared_dict] { return shared_dict(shared_stats()); },
      "Shared-memory requests (warp-wide instructions) and the wavefronts the banks needed for them, "
      "since the module was loaded: wavefronts / requests is the average bank-conflict degree");
  m.def(
      "shared_stats_per_launch",
      [shared_dict] {
        pybind11::list out;
        for (const SharedStats& s : shared_stats_per_launch()) out.append(shared_dict(s));
        return out;
      },
      "shared_stats() of each of the latest launches, oldest first");
  m.def(
      "set_device",
      [](int sm_count, int max_threads_per_sm) {
        TORCH_CHECK(sm_count > 0 && max_threads_per_sm >= 32, "fastgan emu: invalid device");
        device_props().multiProcessorCount = sm_count;
        device_props().maxThreadsPerMultiProcessor = max_threads_per_sm;
      },
      "The multiprocessor count and threads per multiprocessor the grid planners see", pybind11::arg("sm_count"),
      pybind11::arg("max_threads_per_sm") = 2048);
  m.def("selftest_block_sum", &selftest_block_sum,
        "Per-block sums of 1000 * block + thread (deliberately racy "
        "when with_barrier is False)");
  m.def("next_pow2", &selftest_next_pow2, "The grid planner's next_pow2 (csrc/cuda/common.cuh)");
  m.def("selftest_misaligned_load", &selftest_misaligned_load, "A kernel loading 16 bytes from a misaligned address");
  m.def("selftest_shared_stride", &selftest_shared_stride,
        "(requests, wavefronts) of a warp storing and loading "
        "shared memory at lane * stride (elements of `bytes` bytes); reach > 0 writes past the array's end",
        pybind11::arg("stride"), pybind11::arg("bytes") = 4, pybind11::arg("reach") = 0);
  m.def("selftest_deadlock", &selftest_deadlock, "A kernel whose threads wait at different barriers");
}
