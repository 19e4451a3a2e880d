// Declarations shared by the CPU and CUDA kernels: input checks and small helpers.
// The user-facing argument checks live in fastgan/_checks.py and run before either path;
// these TORCH_CHECKs guard the ops when they are called directly.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "activations.h"

namespace fastgan {

enum class Reduction : int64_t { None = 0, Mean = 1, Sum = 2 };

// The layout the kernels walk: NCHW or NHWC, both dense. Anything else is copied into the
// layout it is closest to, so the output keeps the caller's memory format.
inline at::MemoryFormat layout_of(const at::Tensor& t) {
  if (t.dim() == 4 && t.suggest_memory_format() == at::MemoryFormat::ChannelsLast)
    return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

inline bool is_float_dtype(const at::Tensor& t) {
  auto s = t.scalar_type();
  return s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16;
}

// Per-channel parameters and statistics are float (or double for double input).
inline at::ScalarType stats_dtype(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_float_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.defined(), "fastgan: ", name, " is undefined");
  TORCH_CHECK(is_float_dtype(t), "fastgan: ", name,
              " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_channel_vector(const c10::optional<at::Tensor>& t, const at::Tensor& input,
                                 const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == input.size(1), "fastgan: ", name,
              " must be a 1-D tensor of ", input.size(1), " elements (one per channel), got shape ",
              t->sizes());
  TORCH_CHECK(t->device() == input.device(), "fastgan: ", name, " is on ", t->device(),
              " but input is on ", input.device());
  TORCH_CHECK(is_float_dtype(*t), "fastgan: ", name, " must be floating point, got ",
              t->scalar_type());
}

inline void check_bn_input(const at::Tensor& input) {
  check_float_input(input, "input");
  TORCH_CHECK(input.dim() == 4, "fastgan: batch_norm_act expects a 4-D input (N, C, H, W), got ",
              input.dim(), "-D input of shape ", input.sizes());
}

// --- The argument checks of each op, called by its CPU and its CUDA kernel alike. ----------

// Returns whether batch statistics are used (training, or no running statistics).
inline bool check_batch_norm_act_args(const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                                      const c10::optional<at::Tensor>& bias,
                                      const c10::optional<at::Tensor>& running_mean,
                                      const c10::optional<at::Tensor>& running_var, bool training) {
  check_bn_input(input);
  check_channel_vector(weight, input, "weight");
  check_channel_vector(bias, input, "bias");
  check_channel_vector(running_mean, input, "running_mean");
  check_channel_vector(running_var, input, "running_var");
  const bool use_batch = training || !running_mean.has_value() || !running_mean->defined();
  if (!use_batch)
    TORCH_CHECK(running_var.has_value() && running_var->defined(),
                "fastgan: running_var is required with running_mean in eval mode");
  // Same message as torch.nn.functional.batch_norm.
  if (use_batch)
    TORCH_CHECK(input.size(0) * input.size(2) * input.size(3) > 1,
                "Expected more than 1 value per channel when training, got input size ", input.sizes());
  return use_batch;
}

inline void check_batch_norm_act_backward_args(const at::Tensor& grad_out, const at::Tensor& input,
                                               const c10::optional<at::Tensor>& weight,
                                               const c10::optional<at::Tensor>& bias, const at::Tensor& save_mean,
                                               const at::Tensor& save_var) {
  check_bn_input(input);
  TORCH_CHECK(grad_out.sizes() == input.sizes(), "fastgan: grad_out has shape ", grad_out.sizes(),
              " but input has shape ", input.sizes());
  check_channel_vector(weight, input, "weight");
  check_channel_vector(bias, input, "bias");
  check_channel_vector(save_mean, input, "save_mean");
  check_channel_vector(save_var, input, "save_var");
}

// The globally reduced sums the elementwise backward of synchronised BatchNorm divides by the count.
inline void check_backward_elemt_sums(const at::Tensor& input, const at::Tensor& mean_dy, const at::Tensor& mean_dy_xmu) {
  check_channel_vector(mean_dy, input, "mean_dy");
  check_channel_vector(mean_dy_xmu, input, "mean_dy_xmu");
}

inline void check_update_stats_args(const at::Tensor& running_mean, const at::Tensor& running_var,
                                    const at::Tensor& num_batches_tracked, const at::Tensor& save_mean,
                                    const at::Tensor& save_var, int64_t count) {
  TORCH_CHECK(count > 1, "fastgan: batch_norm_update_stats needs more than one value per channel, got ", count);
  TORCH_CHECK(running_mean.numel() == save_mean.numel() && running_var.numel() == save_var.numel() &&
                  running_mean.numel() == running_var.numel(),
              "fastgan: running stats and batch stats must have one value per channel each");
  TORCH_CHECK(running_mean.scalar_type() == running_var.scalar_type(),
              "fastgan: running_mean and running_var must have the same dtype");
  TORCH_CHECK(num_batches_tracked.numel() == 1 && num_batches_tracked.scalar_type() == at::kLong &&
                  num_batches_tracked.device() == running_mean.device(),
              "fastgan: num_batches_tracked must be a one-element int64 tensor on ", running_mean.device());
}

inline void check_activation_backward_args(const at::Tensor& grad_out, const at::Tensor& output) {
  check_float_input(output, "output");
  TORCH_CHECK(grad_out.sizes() == output.sizes(), "fastgan: grad_out has shape ", grad_out.sizes(),
              " but output has shape ", output.sizes());
}

// Returns whether a target tensor was given.
inline bool check_bce_args(const at::Tensor& input, const c10::optional<at::Tensor>& target, int64_t reduction) {
  check_float_input(input, "input");
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got ",
              reduction);
  const bool has_target = target.has_value() && target->defined();
  if (has_target)
    TORCH_CHECK(target->sizes() == input.sizes(), "fastgan: target size ", target->sizes(),
                " must be the same as input size ", input.sizes());
  return has_target;
}

// A per-channel vector as a contiguous tensor of the statistics dtype (undefined stays undefined).
inline at::Tensor as_stats(const c10::optional<at::Tensor>& t, const at::Tensor& input) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
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
  b.grad_out = grad_out.to(b.input.scalar_type()).contiguous(b.fmt);
  const auto sdt = stats_dtype(b.input);
  b.mean = mean.to(sdt).contiguous();
  b.var = var.to(sdt).contiguous();
  b.weight = as_stats(weight, b.input);
  b.bias = as_stats(bias, b.input);
  return b;
}

// The inputs and outputs of the BCE kernels in the input's layout. Shared by CPU and CUDA.
struct BceTensors {
  at::Tensor input, target, grad, loss;
  bool has_target;
  Reduction reduction;
};

inline BceTensors bce_tensors(const at::Tensor& input, const c10::optional<at::Tensor>& target, int64_t reduction) {
  BceTensors b;
  b.has_target = check_bce_args(input, target, reduction);
  const auto fmt = layout_of(input);
  b.input = input.contiguous(fmt);
  b.target = b.has_target ? target->to(b.input.scalar_type()).contiguous(fmt) : at::Tensor();
  b.reduction = static_cast<Reduction>(reduction);
  b.grad = at::empty_like(b.input, b.input.options(), fmt);
  b.loss = b.reduction == Reduction::None ? at::empty_like(b.input, b.input.options(), fmt)
                                          : at::empty({}, b.input.options());
  return b;
}

}  // namespace fastgan
