// The CPU activation op (a convolution's LeakyReLU or Tanh without BatchNorm) and its
// backward. The op comes first; its loops follow, compiled once per instruction set
// (for_each_isa.h), and the op calls the set this processor runs (FASTGAN_CPU_LOOP).
#ifndef FASTGAN_CPU_ISA  // the op, compiled once
#include <torch/library.h>

#include "../fastgan.h"
#include "../args/activation.h"
#include "isa.h"

#define FASTGAN_CPU_LOOPS "activation.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

at::Tensor activation_cpu(const at::Tensor& input, c10::string_view activation, double negative_slope) {
  const ActivationTensors t = activation_tensors(input, activation, negative_slope);
  FASTGAN_CPU_LOOP(activation_entry)(t.input.scalar_type(), t.act, t.input.const_data_ptr(), t.out.data_ptr(),
                                     t.input.numel(), negative_slope);
  return t.out;
}

at::Tensor activation_backward_cpu(const at::Tensor& grad_out, const at::Tensor& output, c10::string_view activation,
                                   double negative_slope) {
  const ActivationGradTensors t = activation_backward_tensors(grad_out, output, activation, negative_slope);
  FASTGAN_CPU_LOOP(activation_backward_entry)(t.output.scalar_type(), t.act, t.grad_out.const_data_ptr(),
                                              t.output.const_data_ptr(), t.grad_in.data_ptr(), t.output.numel(),
                                              negative_slope);
  return t.grad_in;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("activation", &activation_cpu);
  m.impl("activation_backward", &activation_backward_cpu);
}

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)

namespace {

template <Activation ACT, typename scalar_t>
void activation_loop(const scalar_t* x, scalar_t* y, int64_t n, double negative_slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t slope = acc_t(negative_slope);
  at::parallel_for(0, n, kGrain, [&, slope](int64_t i0, int64_t i1) {
    const scalar_t* xp = x + i0;
    store_each(y + i0, i1 - i0, [&, slope](int64_t i) { return activate_t<ACT>(load(xp[i]), slope); });
  });
}

template <Activation ACT, typename scalar_t>
void activation_backward_loop(const scalar_t* dy, const scalar_t* y, scalar_t* dx, int64_t n, double negative_slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t slope = acc_t(negative_slope);
  at::parallel_for(0, n, kGrain, [&, slope](int64_t i0, int64_t i1) {
    const scalar_t *dp = dy + i0, *yp = y + i0;
    store_each(dx + i0, i1 - i0,
               [&, slope](int64_t i) { return load(dp[i]) * activation_grad_from_output_t<ACT>(load(yp[i]), slope); });
  });
}

void activation_entry(c10::ScalarType dt, Activation act, const void* x, void* y, int64_t n, double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_activation", [&] {
    dispatch_activation(act, [&](auto tag) {
      activation_loop<decltype(tag)::value>(static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y), n, slope);
    });
  });
}

void activation_backward_entry(c10::ScalarType dt, Activation act, const void* dy, const void* y, void* dx, int64_t n,
                               double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_activation_backward", [&] {
    dispatch_activation(act, [&](auto tag) {
      activation_backward_loop<decltype(tag)::value>(static_cast<const scalar_t*>(dy), static_cast<const scalar_t*>(y),
                                                     static_cast<scalar_t*>(dx), n, slope);
    });
  });
}

}  // namespace

#endif  // FASTGAN_CPU_ISA
