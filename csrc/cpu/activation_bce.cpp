// CPU kernels for the standalone activation (conv + leaky_relu, conv_transpose + tanh) and
// the fused BCE-with-logits loss + gradient.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../fastgan.h"

namespace fastgan {
namespace {

constexpr int64_t kGrain = 32768;

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;

// Loops live outside the AT_DISPATCH lambdas: a #pragma cannot sit inside a macro argument.
template <Activation ACT, typename scalar_t>
void activation_loop(const scalar_t* x, scalar_t* y, int64_t n, double negative_slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t slope = acc_t(negative_slope);
  at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y[i] = scalar_t(activate_t<ACT>(acc_t(x[i]), slope));
  });
}

template <Activation ACT, typename scalar_t>
void activation_backward_loop(const scalar_t* dy, const scalar_t* y, scalar_t* dx, int64_t n,
                              double negative_slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t slope = acc_t(negative_slope);
  at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i)
      dx[i] = scalar_t(acc_t(dy[i]) * activation_grad_from_output_t<ACT>(acc_t(y[i]), slope));
  });
}

at::Tensor activation_cpu(const at::Tensor& input_, c10::string_view activation, double negative_slope) {
  check_float_input(input_, "input");
  const Activation act = parse_activation(activation);
  const at::Tensor input = input_.contiguous(layout_of(input_));
  at::Tensor out = at::empty_like(input, input.options(), layout_of(input));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "activation_cpu", [&] {
    dispatch_activation(act, [&](auto tag) {
      activation_loop<decltype(tag)::value>(input.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), input.numel(),
                                            negative_slope);
    });
  });
  return out;
}

at::Tensor activation_backward_cpu(const at::Tensor& grad_out_, const at::Tensor& output_,
                                   c10::string_view activation, double negative_slope) {
  check_activation_backward_args(grad_out_, output_);
  const Activation act = parse_activation(activation);
  const auto fmt = layout_of(output_);
  const at::Tensor output = output_.contiguous(fmt);
  const at::Tensor grad_out = grad_out_.to(output.scalar_type()).contiguous(fmt);
  at::Tensor grad_in = at::empty_like(output, output.options(), fmt);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "activation_backward_cpu", [&] {
    dispatch_activation(act, [&](auto tag) {
      activation_backward_loop<decltype(tag)::value>(grad_out.const_data_ptr<scalar_t>(),
                                                     output.const_data_ptr<scalar_t>(), grad_in.data_ptr<scalar_t>(),
                                                     output.numel(), negative_slope);
    });
  });
  return grad_in;
}

// Fixed-size blocks summed in order: the same bits for any thread count.
constexpr int64_t kBceBlock = 4096;

std::tuple<at::Tensor, at::Tensor> bce_with_logits_cpu(const at::Tensor& input_,
                                                       const c10::optional<at::Tensor>& target_,
                                                       double target_value, int64_t reduction) {
  BceTensors b = bce_tensors(input_, target_, reduction);
  const at::Tensor &input = b.input, &target = b.target;
  at::Tensor &grad = b.grad, &loss = b.loss;
  const bool has_target = b.has_target;
  const Reduction red = b.reduction;
  const int64_t n = input.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "bce_with_logits_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* t = has_target ? target.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gp = grad.data_ptr<scalar_t>();
    const acc_t tv = acc_t(target_value);
    const acc_t gscale = red == Reduction::Mean ? acc_t(1) / acc_t(std::max<int64_t>(n, 1)) : acc_t(1);
    if (red == Reduction::None) {
      scalar_t* lp = loss.data_ptr<scalar_t>();
      at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          acc_t l, gr;
          bce_point(acc_t(x[i]), t ? acc_t(t[i]) : tv, l, gr);
          lp[i] = scalar_t(l);
          gp[i] = scalar_t(gr);
        }
      });
      return;
    }
    const int64_t blocks = (n + kBceBlock - 1) / kBceBlock;
    std::vector<double> partial(blocks, 0.0);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t i1 = std::min(n, (b + 1) * kBceBlock);
        acc_t s = 0;
        for (int64_t i = b * kBceBlock; i < i1; ++i) {
          acc_t l, gr;
          bce_point(acc_t(x[i]), t ? acc_t(t[i]) : tv, l, gr);
          s += l;
          gp[i] = scalar_t(gr * gscale);
        }
        partial[b] = double(s);
      }
    });
    double total = 0;
    for (double p : partial) total += p;
    // Mean of an empty tensor is NaN, as in torch.
    if (red == Reduction::Mean) total = n == 0 ? std::nan("") : total / double(n);
    loss.fill_(total);
  });
  return {loss, grad};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("activation", &activation_cpu);
  m.impl("activation_backward", &activation_backward_cpu);
  m.impl("bce_with_logits", &bce_with_logits_cpu);
}

}  // namespace fastgan
