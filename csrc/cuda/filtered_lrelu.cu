// CUDA kernels of filtered_lrelu's activation (args/filtered_lrelu.h): the leaky ReLU with gain
// and clamp over the upsampled signal, writing its 2-bit record, and the backward that reads only
// the record. Each thread owns one record byte, the 4 consecutive elements of a row it packs, so
// no two threads write the same byte and a warp reads 128 consecutive elements; a grid-stride
// walk over at most one wave of blocks, 32-bit index math while the record's bytes plus one
// grid stride stay below 2^31. One launch each.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common.cuh"
#include "../args/filtered_lrelu.h"

namespace fastgan {
namespace cuda {
namespace {

// Record byte q's elements: the first's offset in the signal and how many (4, fewer at a row's end).
template <typename I>
struct RecordByte {
  int64_t base;
  int n;
  __device__ __forceinline__ RecordByte(I q, I bytes_per_row, I width) {
    const I row = q / bytes_per_row, w0 = (q - row * bytes_per_row) * I(kSignsPerByte);
    base = int64_t(row) * width + w0;
    n = int(width - w0 < I(kSignsPerByte) ? width - w0 : I(kSignsPerByte));
  }
};

template <typename scalar_t, typename I>
__global__ void FASTGAN_KERNEL_BOUNDS filtered_lrelu_act_kernel(const scalar_t* __restrict__ z,
                                                                scalar_t* __restrict__ a, uint8_t* __restrict__ sign,
                                                                I bytes, I bytes_per_row, I width,
                                                                acc_type<scalar_t> gain, acc_type<scalar_t> slope,
                                                                acc_type<scalar_t> clamp) {
  using A = acc_type<scalar_t>;
  const I step = I(gridDim.x) * I(blockDim.x);
  for (I q = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); bytes > q; q += step) {
    const RecordByte<I> r(q, bytes_per_row, width);
    unsigned packed = 0;
    for (int k = 0; k < r.n; ++k) {
      uint8_t code;
      a[r.base + k] = scalar_t(filtered_lrelu_point(A(z[r.base + k]), gain, slope, clamp, code));
      packed |= unsigned(code) << (2 * k);
    }
    sign[q] = uint8_t(packed);
  }
}

template <typename scalar_t, typename I>
__global__ void FASTGAN_KERNEL_BOUNDS filtered_lrelu_act_backward_kernel(
    const scalar_t* __restrict__ grad_a, const uint8_t* __restrict__ sign, scalar_t* __restrict__ grad_z, I bytes,
    I bytes_per_row, I width, acc_type<scalar_t> gain, acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  const I step = I(gridDim.x) * I(blockDim.x);
  for (I q = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); bytes > q; q += step) {
    const RecordByte<I> r(q, bytes_per_row, width);
    const unsigned packed = sign[q];
    for (int k = 0; k < r.n; ++k)
      grad_z[r.base + k] =
          scalar_t(A(grad_a[r.base + k]) * filtered_lrelu_factor((packed >> (2 * k)) & 3u, gain, slope));
  }
}

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_act_cuda(const at::Tensor& z, double gain, double slope,
                                                           double clamp) {
  DeviceGuard guard(z.device());
  const FilteredLreluActTensors t = filtered_lrelu_act_tensors(z);
  const int64_t bytes = t.rows * t.bytes_per_row;
  if (bytes == 0) return {t.out, t.sign};
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.z.scalar_type(), "filtered_lrelu_act_cuda", [&] {
    using A = acc_type<scalar_t>;
    const scalar_t* zp = t.z.const_data_ptr<scalar_t>();
    scalar_t* ap = t.out.data_ptr<scalar_t>();
    uint8_t* sp = t.sign.data_ptr<uint8_t>();
    const dim3 grid(grid_for(bytes)), block(kThreads);
    if ((int64_t(1) << 31) > bytes + int64_t(grid.x) * kThreads)  // q + step stays below 2^31
      launch(filtered_lrelu_act_kernel<scalar_t, int>, grid, block, 0, stream, zp, ap, sp, int(bytes),
             int(t.bytes_per_row), int(t.width), A(gain), A(slope), A(clamp));
    else
      launch(filtered_lrelu_act_kernel<scalar_t, int64_t>, grid, block, 0, stream, zp, ap, sp, bytes, t.bytes_per_row,
             t.width, A(gain), A(slope), A(clamp));
  });
  return {t.out, t.sign};
}

at::Tensor filtered_lrelu_act_backward_cuda(const at::Tensor& grad_a, const at::Tensor& sign, double gain,
                                            double slope) {
  DeviceGuard guard(grad_a.device());
  const FilteredLreluActTensors t = filtered_lrelu_act_backward_tensors(grad_a, sign);
  const int64_t bytes = t.rows * t.bytes_per_row;
  if (bytes == 0) return t.out;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.z.scalar_type(), "filtered_lrelu_act_backward_cuda", [&] {
    using A = acc_type<scalar_t>;
    const scalar_t* gp = t.z.const_data_ptr<scalar_t>();
    const uint8_t* sp = t.sign.const_data_ptr<uint8_t>();
    scalar_t* op = t.out.data_ptr<scalar_t>();
    const dim3 grid(grid_for(bytes)), block(kThreads);
    if ((int64_t(1) << 31) > bytes + int64_t(grid.x) * kThreads)  // q + step stays below 2^31
      launch(filtered_lrelu_act_backward_kernel<scalar_t, int>, grid, block, 0, stream, gp, sp, op, int(bytes),
             int(t.bytes_per_row), int(t.width), A(gain), A(slope));
    else
      launch(filtered_lrelu_act_backward_kernel<scalar_t, int64_t>, grid, block, 0, stream, gp, sp, op, bytes,
             t.bytes_per_row, t.width, A(gain), A(slope));
  });
  return t.out;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("filtered_lrelu_act", &cuda::filtered_lrelu_act_cuda);
  m.impl("filtered_lrelu_act_backward", &cuda::filtered_lrelu_act_backward_cuda);
}

}  // namespace fastgan
