// Kernels with deliberate bugs, to show the emulation catches what it claims to: a shared-
// memory reduction without its barrier gives wrong, seed-dependent sums, and threads that
// wait at different barriers are reported as a deadlock; shared-memory accesses at known strides
// cost the wavefronts the banks would need. Test-only, like the whole module.
#include <torch/extension.h>

#include "../cuda/common.cuh"

namespace fastgan {
namespace emu {
namespace {

constexpr int kThreads = 128;

// Thread 0 sums what the block's threads wrote to shared memory (1000 * block + thread);
// with_barrier=false omits the barrier between the writes and the read.
__global__ void block_sum_kernel(int64_t* out, bool with_barrier) {
  __shared__ int64_t values[kThreads];
  values[threadIdx.x] = 1000 * int64_t(blockIdx.x) + threadIdx.x;
  if (with_barrier) __syncthreads();
  if (threadIdx.x == 0) {
    int64_t total = 0;
    for (int i = 0; i < kThreads; ++i) total += values[i];
    out[blockIdx.x] = total;
  }
}

__global__ void mismatched_barriers_kernel() {
  if (threadIdx.x == 0)
    __syncwarp();
  else
    __syncthreads();
}

// A 16-byte load from an address 4 bytes past a 16-byte boundary.
__global__ void misaligned_load_kernel(const float* data, float* out) {
  const auto v = cuda::load_pack<float, 4>(data + 1);
  out[threadIdx.x] = v.v[0];
}

// Each lane stores and then loads one T in shared memory at index lane * stride: 4-byte
// elements at stride 1 are conflict-free, stride 2 is a 2-way conflict, 32 a 32-way one and 0
// a broadcast; 8-byte elements at stride 1 take two wavefronts. reach > 0: lane 0 also writes
// `reach` elements past the array's end.
template <typename T>
__global__ void shared_stride_kernel(int stride, int reach, float* out) {
  constexpr int kCount = 32 * 32;
  FASTGAN_SHARED(T, sh, kCount);
  const int lane = int(threadIdx.x);
  sh[lane * stride] = T(lane);
  __syncthreads();
  if (lane == 0 && reach > 0) sh[kCount - 1 + reach] = T(0);
  out[lane] = float(T(sh[lane * stride]));
}

}  // namespace

std::pair<int64_t, int64_t> selftest_shared_stride(int64_t stride, int64_t bytes, int64_t reach) {
  TORCH_CHECK(stride >= 0 && stride <= 32 && (bytes == 4 || bytes == 8),
              "selftest_shared_stride: stride 0..32, 4 or 8 bytes");
  at::Tensor out = at::empty({32}, at::kFloat);
  const SharedStats before = shared_stats();
  if (bytes == 4)
    cuda::launch(shared_stride_kernel<float>, dim3(1), dim3(32), 0, cuda::Stream{}, int(stride), int(reach),
                 out.data_ptr<float>());
  else
    cuda::launch(shared_stride_kernel<double>, dim3(1), dim3(32), 0, cuda::Stream{}, int(stride), int(reach),
                 out.data_ptr<float>());
  const SharedStats after = shared_stats();
  return {int64_t(after.requests - before.requests), int64_t(after.wavefronts - before.wavefronts)};
}

at::Tensor selftest_block_sum(int64_t blocks, bool with_barrier) {
  at::Tensor out = at::full({blocks}, -1, at::kLong);
  cuda::launch(block_sum_kernel, dim3(unsigned(blocks)), dim3(kThreads), 0, cuda::Stream{}, out.data_ptr<int64_t>(),
               with_barrier);
  return out;
}

int64_t selftest_next_pow2(int64_t v) { return cuda::next_pow2(v); }

void selftest_misaligned_load() {
  at::Tensor data = at::zeros({64}, at::kFloat), out = at::empty({32}, at::kFloat);
  cuda::launch(misaligned_load_kernel, dim3(1), dim3(32), 0, cuda::Stream{}, data.const_data_ptr<float>(),
               out.data_ptr<float>());
}

void selftest_deadlock() { cuda::launch(mismatched_barriers_kernel, dim3(1), dim3(64), 0, cuda::Stream{}); }

}  // namespace emu
}  // namespace fastgan
