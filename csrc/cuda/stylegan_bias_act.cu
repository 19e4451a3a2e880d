// CUDA kernels of StyleGAN's bias_act (NVlabs' semantics: y = clamp(act(x + b) * gain, -clamp,
// clamp), b along dim) and its backward (the gradient recomputed from x and b, zero where the
// clamp cut the output off). Elementwise, one launch each: every thread walks the tensor's
// storage in a grid stride, loads issued kLoadsInFlight at a time (walk_unrolled); an element's
// channel is (i / run) % C, run = x's stride along dim, in 32-bit index math when the tensor
// has fewer than 2^31 elements (64-bit division costs several times as many instructions).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common.cuh"
#include "../args/stylegan_bias_act.h"

namespace fastgan {
namespace cuda {
namespace {

// dy == nullptr: the forward. I: the index type of the channel math.
template <typename scalar_t, StyleganAct ACT, bool BACKWARD, typename I>
__global__ void FASTGAN_KERNEL_BOUNDS stylegan_bias_act_kernel(const scalar_t* __restrict__ x,
                                                               const scalar_t* __restrict__ b,
                                                               const scalar_t* __restrict__ dy,
                                                               scalar_t* __restrict__ out, int64_t numel, I run, I C,
                                                               StyleganAct act, acc_type<scalar_t> alpha,
                                                               acc_type<scalar_t> gain, acc_type<scalar_t> clamp) {
  using A = acc_type<scalar_t>;
  struct Loaded {
    scalar_t x, dy;
  };
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  walk_unrolled<kLoadsInFlight>(
      RowCursor(first, step, 1, 0), numel, [&](int64_t i) { return Loaded{x[i], BACKWARD ? dy[i] : scalar_t(0)}; },
      [&](int64_t i, const Loaded& v) {
        const A bias = b != nullptr ? A(b[(I(i) / run) % C]) : A(0);
        const A pre = A(v.x) + bias;
        const A y = stylegan_act_of<ACT>(act, pre, alpha) * gain;
        if (BACKWARD) {
          const A g = A(v.dy) * gain * stylegan_act_grad_of<ACT>(act, pre, alpha);
          out[i] = scalar_t(clamp_passes(y, clamp) ? g : A(0));
        } else {
          out[i] = scalar_t(clamp_symmetric(y, clamp));
        }
      });
}

template <bool BACKWARD>
void launch_stylegan_bias_act(const StyleganBiasActTensors& t, double alpha, double gain, double clamp) {
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.x.scalar_type(), "stylegan_bias_act_cuda", [&] {
    using A = acc_type<scalar_t>;
    const scalar_t* x = t.x.const_data_ptr<scalar_t>();
    const scalar_t* b = t.b.defined() ? t.b.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* dy = BACKWARD ? t.grad_out.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = t.out.data_ptr<scalar_t>();
    const dim3 grid(grid_for(t.numel)), block(kThreads);
    if ((int64_t(1) << 31) > t.numel) {  // written so, not `t.numel <`: see walk_unrolled on C++20
      dispatch_stylegan_act(t.act, [&](auto tag) {
        constexpr StyleganAct ACT = decltype(tag)::value;
        launch(stylegan_bias_act_kernel<scalar_t, ACT, BACKWARD, int>, grid, block, 0, stream, x, b, dy, out, t.numel,
               int(t.run), int(t.C), t.act, A(alpha), A(gain), A(clamp));
        return 0;
      });
    } else {  // 2^31 elements or more: 64-bit channel math, one kernel for every activation
      launch(stylegan_bias_act_kernel<scalar_t, kRuntimeAct, BACKWARD, int64_t>, grid, block, 0, stream, x, b, dy, out,
             t.numel, t.run, t.C, t.act, A(alpha), A(gain), A(clamp));
    }
  });
}

at::Tensor stylegan_bias_act_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& b, int64_t dim,
                                  c10::string_view act, double alpha, double gain, double clamp) {
  DeviceGuard guard(x.device());
  const StyleganBiasActTensors t = stylegan_bias_act_tensors(x, b, dim, act);
  if (t.numel > 0) launch_stylegan_bias_act<false>(t, alpha, gain, clamp);
  return t.out;
}

at::Tensor stylegan_bias_act_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                           const c10::optional<at::Tensor>& b, int64_t dim, c10::string_view act,
                                           double alpha, double gain, double clamp) {
  DeviceGuard guard(x.device());
  TORCH_CHECK(grad_out.defined(), "fastgan: grad_out is undefined");
  const StyleganBiasActTensors t = stylegan_bias_act_tensors(x, b, dim, act, grad_out);
  if (t.numel > 0) launch_stylegan_bias_act<true>(t, alpha, gain, clamp);
  return t.out;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("stylegan_bias_act", &cuda::stylegan_bias_act_cuda);
  m.impl("stylegan_bias_act_backward", &cuda::stylegan_bias_act_backward_cuda);
}

}  // namespace fastgan
