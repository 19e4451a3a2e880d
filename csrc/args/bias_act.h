// The bias + activation ops' arguments: their checks and the preparation the CPU and CUDA ops
// share (contiguous rows of C features).
#pragma once

#include "../fastgan.h"
#include "activation.h"

namespace fastgan {

// bias_act's operands: input (*, C) and a bias of C values, of the input's dtype and device.
inline void check_bias_act_args(const at::Tensor& input, const at::Tensor& bias) {
  check_float_tensor(input, "input");
  TORCH_CHECK(bias.defined(), "fastgan: bias is undefined");
  TORCH_CHECK_VALUE(input.dim() >= 1 && bias.dim() == 1 && bias.size(0) == input.size(-1),
                    "fastgan: bias_act adds a bias of shape (C,) along the last dimension of input (*, C), got bias "
                    "of shape ",
                    py_shape(bias.sizes()), " and input of shape ", py_shape(input.sizes()));
  check_same_device(bias, input, "bias");
  TORCH_CHECK_TYPE(bias.scalar_type() == input.scalar_type(), "fastgan: bias dtype ", py_dtype(bias.scalar_type()),
                   " does not match input dtype ", py_dtype(input.scalar_type()));
}

// bias_act_backward's: the gradient of an output (*, C) of bias_act.
inline void check_bias_act_backward_args(const at::Tensor& grad_out, const at::Tensor& output) {
  check_activation_backward_args(grad_out, output);
  TORCH_CHECK_VALUE(output.dim() >= 1,
                    "fastgan: bias_act_backward expects an output of shape (*, C), got a 0-D "
                    "tensor");
}

// bias_act's tensors, shared by CPU and CUDA: contiguous rows of C features and the output.
struct BiasActTensors {
  at::Tensor input, bias, out;
  int64_t rows = 0, C = 0;
};

inline BiasActTensors bias_act_tensors(const at::Tensor& input, const at::Tensor& bias) {
  check_bias_act_args(input, bias);
  BiasActTensors t;
  t.input = input.contiguous();
  t.bias = bias.contiguous();
  t.out = at::empty(t.input.sizes(), t.input.options());
  t.C = t.bias.numel();
  t.rows = t.C == 0 ? 0 : t.input.numel() / t.C;
  return t;
}

// bias_act_backward's, shared by CPU and CUDA: grad_out in the output's dtype, both as
// contiguous rows, and the two gradients to write.
struct BiasActGradTensors {
  at::Tensor grad_out, output, grad_in, grad_bias;
  int64_t rows = 0, C = 0;
};

inline BiasActGradTensors bias_act_backward_tensors(const at::Tensor& grad_out, const at::Tensor& output) {
  check_bias_act_backward_args(grad_out, output);
  BiasActGradTensors t;
  t.output = output.contiguous();
  t.grad_out = in_dtype(grad_out, t.output.scalar_type()).contiguous();
  t.grad_in = at::empty(t.output.sizes(), t.output.options());
  t.C = t.output.size(-1);
  t.grad_bias = at::empty({t.C}, t.output.options());
  t.rows = t.C == 0 ? 0 : t.output.numel() / t.C;
  return t;
}

}  // namespace fastgan
