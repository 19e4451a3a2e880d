// Declarations shared by the CPU and CUDA kernels: layouts, dtypes and the input
// preparation every op does the same way. The argument checks are in checks.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "acc_type.h"
#include "activations.h"
#include "checks.h"
#include "logit_losses.h"

namespace fastgan {

// The layout the kernels walk: NCHW or NHWC, both dense. Anything else is copied into the
// layout it is closest to, so the output keeps the caller's memory format.
inline at::MemoryFormat layout_of(const at::Tensor& t) {
  if (t.dim() == 4 && t.suggest_memory_format() == at::MemoryFormat::ChannelsLast)
    return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

// The tensor a BatchNorm kernel walks: N x C x HW, NCHW or NHWC (channels_last). One
// definition for the CPU loops and the CUDA kernels' grid planners.
struct Geometry {
  int64_t N, C, HW;
  bool channels_last;
  int64_t count() const { return N * HW; }
};

inline Geometry geometry_of(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3), layout_of(x) == at::MemoryFormat::ChannelsLast};
}

// t in the given dtype. Tensor::to is a dispatched op even when it has nothing to do, which
// on a hot path (every backward) costs host time for nothing.
inline at::Tensor in_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

// Per-channel parameters and statistics are float (or double for double input).
inline at::ScalarType stats_dtype(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// A per-channel vector as a contiguous tensor of the statistics dtype (undefined stays undefined).
inline at::Tensor as_stats(const c10::optional<at::Tensor>& t, const at::Tensor& input) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  // Usually already so: then no dispatched op at all (they cost more than small layers' math).
  if (t->scalar_type() == stats_dtype(input) && t->is_contiguous()) return *t;
  return t->to(stats_dtype(input)).contiguous();
}

// The inputs of the backward ops, checked and put in the layout the kernels walk (the
// input's), with per-channel vectors in the statistics dtype. Shared by CPU and CUDA.
struct BackwardInputs {
  at::Tensor grad_out, input, mean, var, weight, bias;
  at::MemoryFormat fmt;
};

inline BackwardInputs backward_inputs(const at::Tensor& grad_out, const at::Tensor& input,
                                      const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                                      const at::Tensor& mean, const at::Tensor& var) {
  check_batch_norm_act_backward_args(grad_out, input, weight, bias, mean, var);
  BackwardInputs b;
  b.fmt = layout_of(input);
  b.input = input.contiguous(b.fmt);
  b.grad_out = in_dtype(grad_out, b.input.scalar_type()).contiguous(b.fmt);
  b.mean = as_stats(mean, b.input);
  b.var = as_stats(var, b.input);
  b.weight = as_stats(weight, b.input);
  b.bias = as_stats(bias, b.input);
  return b;
}

// The inputs and outputs of the loss kernels (bce_with_logits, logit_loss) in the input's layout.
// Shared by CPU and CUDA.
struct LossTensors {
  at::Tensor input, target, grad, loss;
  bool has_target;
  Reduction reduction;
};

inline LossTensors loss_tensors(const at::Tensor& input, const c10::optional<at::Tensor>& target, int64_t reduction) {
  LossTensors b;
  b.has_target = check_loss_args(input, target, reduction);
  const auto fmt = layout_of(input);
  b.input = input.contiguous(fmt);
  b.target = b.has_target ? target->to(b.input.scalar_type()).contiguous(fmt) : at::Tensor();
  b.reduction = static_cast<Reduction>(reduction);
  b.grad = at::empty_like(b.input, b.input.options(), fmt);
  b.loss = b.reduction == Reduction::None ? at::empty_like(b.input, b.input.options(), fmt)
                                          : at::empty({}, b.input.options());
  return b;
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
