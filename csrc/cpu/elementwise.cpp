// The CPU ops of the standalone activation (conv + leaky_relu, conv_transpose + tanh), a
// Linear layer's bias + activation, and the fused losses + gradient; their loops are in
// kernels.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../fastgan.h"
#include "kernel_table.h"

namespace fastgan {
namespace {

at::Tensor activation_cpu(const at::Tensor& input_, c10::string_view activation, double negative_slope) {
  check_float_tensor(input_, "input");
  const Activation act = parse_activation(activation);
  const at::Tensor input = input_.contiguous(layout_of(input_));
  at::Tensor out = at::empty_like(input, input.options(), layout_of(input));
  cpu::kernels().activation(input.scalar_type(), act, input.const_data_ptr(), out.data_ptr(), input.numel(),
                            negative_slope);
  return out;
}

at::Tensor activation_backward_cpu(const at::Tensor& grad_out_, const at::Tensor& output_,
                                   c10::string_view activation, double negative_slope) {
  check_activation_backward_args(grad_out_, output_);
  const Activation act = parse_activation(activation);
  const auto fmt = layout_of(output_);
  const at::Tensor output = output_.contiguous(fmt);
  const at::Tensor grad_out = in_dtype(grad_out_, output.scalar_type()).contiguous(fmt);
  at::Tensor grad_in = at::empty_like(output, output.options(), fmt);
  cpu::kernels().activation_backward(output.scalar_type(), act, grad_out.const_data_ptr(), output.const_data_ptr(),
                                     grad_in.data_ptr(), output.numel(), negative_slope);
  return grad_in;
}

at::Tensor bias_act_cpu(const at::Tensor& input, const at::Tensor& bias, c10::string_view activation,
                        double negative_slope) {
  const BiasActTensors t = bias_act_tensors(input, bias);
  const Activation act = parse_activation(activation);
  if (t.out.numel() == 0) return t.out;
  cpu::kernels().bias_act(t.input.scalar_type(), act, t.input.const_data_ptr(), t.bias.const_data_ptr(),
                          t.out.data_ptr(), t.rows, t.C, negative_slope);
  return t.out;
}

std::tuple<at::Tensor, at::Tensor> bias_act_backward_cpu(const at::Tensor& grad_out, const at::Tensor& output,
                                                         c10::string_view activation, double negative_slope) {
  const BiasActGradTensors t = bias_act_backward_tensors(grad_out, output);
  const Activation act = parse_activation(activation);
  if (t.C == 0) return {t.grad_in, t.grad_bias};
  cpu::kernels().bias_act_backward(t.output.scalar_type(), act, t.grad_out.const_data_ptr(), t.output.const_data_ptr(),
                                   t.grad_in.data_ptr(), t.grad_bias.data_ptr(), t.rows, t.C, negative_slope);
  return {t.grad_in, t.grad_bias};
}

// Runs the loss kernel over b's tensors and reduces: (loss, d loss / d input).
std::tuple<at::Tensor, at::Tensor> loss_cpu(LossTensors& b, LossKind kind, double target_value) {
  const int64_t n = b.input.numel();
  const Reduction red = b.reduction;
  double total = cpu::kernels().loss(b.input.scalar_type(), kind, b.input.const_data_ptr(),
                                     b.has_target ? b.target.const_data_ptr() : nullptr, target_value,
                                     b.grad.data_ptr(), red == Reduction::None ? b.loss.data_ptr() : nullptr,
                                     n, red);
  if (red == Reduction::None) return {b.loss, b.grad};
  // Mean of an empty tensor is NaN, as in torch.
  if (red == Reduction::Mean) total = n == 0 ? std::nan("") : total / double(n);
  b.loss.fill_(total);
  return {b.loss, b.grad};
}

std::tuple<at::Tensor, at::Tensor> bce_with_logits_cpu(const at::Tensor& input_,
                                                       const c10::optional<at::Tensor>& target_,
                                                       double target_value, int64_t reduction) {
  LossTensors b = loss_tensors(input_, target_, reduction);
  return loss_cpu(b, LossKind::BCE, target_value);
}

std::tuple<at::Tensor, at::Tensor> logit_loss_cpu(const at::Tensor& input_, double target, c10::string_view kind,
                                                  int64_t reduction) {
  const LossKind k = check_logit_loss_args(input_, target, kind, reduction);
  LossTensors b = loss_tensors(input_, c10::nullopt, reduction);
  return loss_cpu(b, k, target);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("activation", &activation_cpu);
  m.impl("activation_backward", &activation_backward_cpu);
  m.impl("bias_act", &bias_act_cpu);
  m.impl("bias_act_backward", &bias_act_backward_cpu);
  m.impl("bce_with_logits", &bce_with_logits_cpu);
  m.impl("logit_loss", &logit_loss_cpu);
}

}  // namespace fastgan
