// The activation ops' arguments (activation, activation_backward; bias_act's reuse them): the
// checks and the preparation their CPU and CUDA ops share.
#pragma once

#include "../fastgan.h"

namespace fastgan {

// An op whose backward reads the activation's gradient from its output (activation, bias_act
// and their backward ops): the activation named, and for leaky_relu a slope >= 0 (with a
// negative one the output's sign is not the input's, and the gradient would be silently
// wrong). `op`: the op's name, for the message. Every such op checks this itself, whoever
// calls it (torch.ops.fastgan.* directly included).
inline Activation activation_from_output_args(c10::string_view activation, double negative_slope, const char* op) {
  const Activation act = parse_activation(activation);
  check_negative_slope(act, negative_slope, op);
  return act;
}

inline void check_activation_backward_args(const at::Tensor& grad_out, const at::Tensor& output) {
  check_float_tensor(output, "output");
  check_grad_out(grad_out, output, "output");
}

// activation's tensors: the input in its own memory format, made dense, and the output.
struct ActivationTensors {
  at::Tensor input, out;
  Activation act;
};

inline ActivationTensors activation_tensors(const at::Tensor& input, c10::string_view activation,
                                            double negative_slope) {
  check_float_tensor(input, "input");
  ActivationTensors t;
  t.act = activation_from_output_args(activation, negative_slope, "activation");
  const auto fmt = layout_of(input);
  t.input = input.contiguous(fmt);
  t.out = at::empty_like(t.input, t.input.options(), fmt);
  return t;
}

// activation_backward's: the output dense in its memory format, grad_out in its dtype and
// format, and the gradient to write.
struct ActivationGradTensors {
  at::Tensor grad_out, output, grad_in;
  Activation act;
};

inline ActivationGradTensors activation_backward_tensors(const at::Tensor& grad_out, const at::Tensor& output,
                                                         c10::string_view activation, double negative_slope) {
  check_activation_backward_args(grad_out, output);
  ActivationGradTensors t;
  t.act = activation_from_output_args(activation, negative_slope, "activation_backward");
  const auto fmt = layout_of(output);
  t.output = output.contiguous(fmt);
  t.grad_out = in_dtype(grad_out, t.output.scalar_type()).contiguous(fmt);
  t.grad_in = at::empty_like(t.output, t.output.options(), fmt);
  return t;
}

}  // namespace fastgan
