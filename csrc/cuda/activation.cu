// CUDA kernels for the standalone activation (applied to the conv output; its backward is
// one elementwise pass that feeds cuDNN's convolution backward).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common.cuh"
#include "../args/activation.h"

namespace fastgan {
namespace cuda {
namespace {

// Layout does not matter elementwise: input and output share strides (both dense in the
// same memory format), so the kernels walk storage order, in packs of VEC elements, each thread
// a grid-stride walk with kLoadsInFlight packs loaded before any is used (walk_unrolled): one
// 16-byte load per step would leave one wave of 4 blocks per SM about 2 MB in flight, half of
// what an H200's bandwidth needs.
template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS activation_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                                        int64_t packs, acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  walk_unrolled<kLoadsInFlight>(
      RowCursor(first, step, VEC, 0), packs, [&](int64_t off) { return load_pack<scalar_t, VEC>(x + off); },
      [&](int64_t off, const P& v) {
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate_t<ACT>(A(v.v[k]), slope));
        store_pack<scalar_t, VEC>(y + off, o);
      });
}

template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS activation_backward_kernel(const scalar_t* __restrict__ dy,
                                                                 const scalar_t* __restrict__ y,
                                                                 scalar_t* __restrict__ dx, int64_t packs,
                                                                 acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  struct Loaded {
    P y, dy;
  };
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  walk_unrolled<kLoadsInFlight / 2>(
      RowCursor(first, step, VEC, 0), packs,
      [&](int64_t off) { return Loaded{load_pack<scalar_t, VEC>(y + off), load_pack<scalar_t, VEC>(dy + off)}; },
      [&](int64_t off, const Loaded& v) {
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k)
          o.v[k] = scalar_t(A(v.dy.v[k]) * activation_grad_from_output_t<ACT>(A(v.y.v[k]), slope));
        store_pack<scalar_t, VEC>(dx + off, o);
      });
}

at::Tensor activation_cuda(const at::Tensor& input_, c10::string_view activation, double negative_slope) {
  DeviceGuard guard(input_.device());
  const ActivationTensors t = activation_tensors(input_, activation, negative_slope);
  const Activation act = t.act;
  const at::Tensor &input = t.input, &out = t.out;
  const int64_t n = input.numel();
  if (n == 0) return out;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "activation_cuda", [&] {
    using A = acc_type<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    const bool vectorize = n % V == 0 && aligned16(x) && aligned16(y);
    dispatch_act(act, [&](auto tag) {
      constexpr Activation ACT = decltype(tag)::value;
      if (vectorize)
        launch(activation_kernel<scalar_t, V, ACT>, grid_for(n / V), kThreads, 0, stream, x, y, n / V,
               A(negative_slope));
      else
        launch(activation_kernel<scalar_t, 1, ACT>, grid_for(n), kThreads, 0, stream, x, y, n, A(negative_slope));
    });
  });
  return out;
}

at::Tensor activation_backward_cuda(const at::Tensor& grad_out_, const at::Tensor& output_, c10::string_view activation,
                                    double negative_slope) {
  DeviceGuard guard(output_.device());
  const ActivationGradTensors t = activation_backward_tensors(grad_out_, output_, activation, negative_slope);
  const Activation act = t.act;
  const at::Tensor &output = t.output, &grad_out = t.grad_out, &grad_in = t.grad_in;
  const int64_t n = output.numel();
  if (n == 0) return grad_in;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "activation_backward_cuda", [&] {
    using A = acc_type<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* y = output.const_data_ptr<scalar_t>();
    const scalar_t* dy = grad_out.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_in.data_ptr<scalar_t>();
    const bool vectorize = n % V == 0 && aligned16(y) && aligned16(dy) && aligned16(dx);
    dispatch_act(act, [&](auto tag) {
      constexpr Activation ACT = decltype(tag)::value;
      if (vectorize)
        launch(activation_backward_kernel<scalar_t, V, ACT>, grid_for(n / V), kThreads, 0, stream, dy, y, dx, n / V,
               A(negative_slope));
      else
        launch(activation_backward_kernel<scalar_t, 1, ACT>, grid_for(n), kThreads, 0, stream, dy, y, dx, n,
               A(negative_slope));
    });
  });
  return grad_in;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("activation", &cuda::activation_cuda);
  m.impl("activation_backward", &cuda::activation_backward_cuda);
}

}  // namespace fastgan
