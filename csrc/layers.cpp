// The fused layers, composed once for every device: the convolution through ATen (oneDNN on
// the CPU, cuDNN on the GPU), then one fastgan op for everything after it. Registered as
// CompositeExplicitAutograd, so a layer is one dispatcher call and one autograd node (its
// autograd kernel is in autograd_layers.cpp), and its argument checks run in C++.
//
// Under autocast the layers cast input, weight and bias as torch casts a convolution's;
// BatchNorm's parameters and running statistics stay in float, as in native batch_norm.
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "fastgan.h"
#include "args/layers.h"
#include "op_list.h"

namespace fastgan {
namespace {

using op::Mask3;
using op::OptTensor;
using op::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor> conv_bn_act(
    const Tensor& input, const Tensor& weight, const OptTensor& conv_bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
    const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& running_mean, const OptTensor& running_var,
    const OptTensor& num_batches_tracked, bool training, c10::optional<double> momentum, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const Layer layer{conv_module(transposed), Norm::BatchNorm2d, act};
  check_conv(input, weight, padding, dilation, groups, transposed, layer);
  Tensor y = at::convolution(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups);
  check_batch_norm(y, bn_weight, bn_bias, running_mean, running_var, layer);
  check_num_batches_tracked(num_batches_tracked, y, layer);
  if (training || !running_mean.has_value() || !running_mean->defined()) check_training_batch(y);
  auto [out, mean, var] =
      op::batch_norm_act().call(y, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training,
                                momentum, eps, activation, negative_slope);
  return {out, y, mean, var};
}

// The convolution's gradients where the mask asks for them (undefined elsewhere).
std::tuple<Tensor, Tensor, Tensor> conv_grads(const Tensor& grad_conv_out, const Tensor& input, const Tensor& weight,
                                              int64_t out_channels, at::IntArrayRef stride, at::IntArrayRef padding,
                                              at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
                                              int64_t groups, Mask3 mask) {
  if (!(mask[0] || mask[1] || mask[2])) return {};
  // The bias's gradient alone is a sum: ATen's convolution_backward would compute the weight's
  // too (and return it, on the CPU, where the mask did not ask for it).
  if (!(mask[0] || mask[1])) return {Tensor(), Tensor(), grad_conv_out.sum({0, 2, 3})};
  const std::vector<int64_t> bias_sizes{out_channels};
  auto grads = at::convolution_backward(grad_conv_out, input, weight,
                                        mask[2] ? at::OptionalIntArrayRef(bias_sizes) : c10::nullopt, stride, padding,
                                        dilation, transposed, output_padding, groups, mask);
  return {mask[0] ? std::get<0>(grads) : Tensor(), mask[1] ? std::get<1>(grads) : Tensor(),
          mask[2] ? std::get<2>(grads) : Tensor()};
}

Tensor param_grad(const Tensor& grad, const OptTensor& param) {
  if (!param.has_value() || !param->defined() || !grad.defined()) return Tensor();
  return in_dtype(grad, param->scalar_type());
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> conv_bn_act_backward(
    const Tensor& grad_out, const Tensor& input, const Tensor& weight, const Tensor& conv_out,
    const OptTensor& bn_weight, const OptTensor& bn_bias, const Tensor& save_mean, const Tensor& save_var,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
    at::IntArrayRef output_padding, int64_t groups, bool batch_stats, double eps, c10::string_view activation,
    double negative_slope, Mask3 output_mask) {
  auto [grad_y, grad_bn_weight, grad_bn_bias] = op::batch_norm_act_backward().call(
      grad_out, conv_out, bn_weight, bn_bias, save_mean, save_var, batch_stats, eps, activation, negative_slope);
  auto [grad_input, grad_weight, grad_bias] = conv_grads(grad_y, input, weight, conv_out.size(1), stride, padding,
                                                         dilation, transposed, output_padding, groups, output_mask);
  return {grad_input, grad_weight, grad_bias, param_grad(grad_bn_weight, bn_weight), param_grad(grad_bn_bias, bn_bias)};
}

Tensor conv_act(const Tensor& input, const Tensor& weight, const OptTensor& bias, at::IntArrayRef stride,
                at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
                int64_t groups, c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const Layer layer{conv_module(transposed), Norm::None, act};
  check_negative_slope(act, negative_slope, layer);
  check_conv(input, weight, padding, dilation, groups, transposed, layer);
  const Tensor y = at::convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups);
  return op::activation().call(y, activation, negative_slope);
}

std::tuple<Tensor, Tensor, Tensor> conv_act_backward(const Tensor& grad_out, const Tensor& input, const Tensor& weight,
                                                     const Tensor& output, at::IntArrayRef stride,
                                                     at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                                                     at::IntArrayRef output_padding, int64_t groups,
                                                     c10::string_view activation, double negative_slope,
                                                     Mask3 output_mask) {
  const Tensor grad_y = op::activation_backward().call(grad_out, output, activation, negative_slope);
  return conv_grads(grad_y, input, weight, output.size(1), stride, padding, dilation, transposed, output_padding,
                    groups, output_mask);
}

Tensor linear_act(const Tensor& input, const Tensor& weight, const OptTensor& bias, c10::string_view activation,
                  double negative_slope) {
  const Activation act = parse_activation(activation);
  const Layer layer{Weighted::Linear, Norm::None, act};
  check_negative_slope(act, negative_slope, layer);
  check_linear(input, weight, bias, layer);
  // The matrix product on its own (BLAS / cuBLAS); fastgan's kernel adds the bias as it
  // applies the activation, so the product's output is read and written once more, not twice.
  const Tensor product = at::linear(input, weight);
  if (!bias.has_value() || !bias->defined()) return op::activation().call(product, activation, negative_slope);
  return op::bias_act().call(product, *bias, activation, negative_slope);
}

// grad_input = g W, grad_weight = g^T x, grad_bias = sum of g over every row, with g the
// activation's gradient (from the output) and x, g flattened to rows of features. g and
// grad_bias come out of one kernel; the bias, when the mask says there is one, is summed in the
// same pass that writes g.
std::tuple<Tensor, Tensor, Tensor> linear_act_backward(const Tensor& grad_out, const Tensor& input,
                                                       const Tensor& weight, const Tensor& output,
                                                       c10::string_view activation, double negative_slope,
                                                       Mask3 output_mask) {
  Tensor g, grad_input, grad_weight, grad_bias;
  if (output_mask[2])
    std::tie(g, grad_bias) = op::bias_act_backward().call(grad_out, output, activation, negative_slope);
  else
    g = op::activation_backward().call(grad_out, output, activation, negative_slope);
  if (output_mask[0]) grad_input = at::matmul(g, weight);
  if (output_mask[1]) grad_weight = at::mm(g.reshape({-1, g.size(-1)}).t(), input.reshape({-1, input.size(-1)}));
  return {grad_input, grad_weight, grad_bias};
}

// --- Autocast: the layer's first three operands (input, weight, bias: the convolution's or
// the matrix product's) in the autocast dtype, the rest as given. ---------------------------

template <c10::DeviceType D>
Tensor autocast_operand(const Tensor& t) {
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(D), t, D);
}
template <c10::DeviceType D>
OptTensor autocast_operand(const OptTensor& t) {
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(D), t, D);
}

template <c10::DeviceType D, class Sig>
struct Autocast;
template <c10::DeviceType D, class R, class Input, class Weight, class Bias, class... Rest>
struct Autocast<D, R(Input, Weight, Bias, Rest...)> {
  template <const c10::TypedOperatorHandle<R(Input, Weight, Bias, Rest...)>& (*handle)()>
  static R kernel(Input input, Weight weight, Bias bias, Rest... rest) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(D));
    return handle().call(autocast_operand<D>(input), autocast_operand<D>(weight), autocast_operand<D>(bias), rest...);
  }
};

template <c10::DeviceType D>
void register_autocast(torch::Library& m) {
  m.impl("conv_bn_act", &Autocast<D, op::sig::conv_bn_act>::template kernel<&op::conv_bn_act>);
  m.impl("conv_act", &Autocast<D, op::sig::conv_act>::template kernel<&op::conv_act>);
  m.impl("linear_act", &Autocast<D, op::sig::linear_act>::template kernel<&op::linear_act>);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CompositeExplicitAutograd, m) {
  m.impl("conv_bn_act", &conv_bn_act);
  m.impl("conv_bn_act_backward", &conv_bn_act_backward);
  m.impl("conv_act", &conv_act);
  m.impl("conv_act_backward", &conv_act_backward);
  m.impl("linear_act", &linear_act);
  m.impl("linear_act_backward", &linear_act_backward);
}

TORCH_LIBRARY_IMPL(fastgan, AutocastCPU, m) { register_autocast<c10::DeviceType::CPU>(m); }

TORCH_LIBRARY_IMPL(fastgan, AutocastCUDA, m) { register_autocast<c10::DeviceType::CUDA>(m); }

}  // namespace fastgan
