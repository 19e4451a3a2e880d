// The BatchNorm + activation ops' arguments (batch_norm_act, its backward, the running-stat
// update, and the split backward synchronised BatchNorm runs): their checks and the
// preparation the CPU and CUDA ops share. Worded as fastgan/_checks.py (tests/test_bad_input.py).
#pragma once

#include "../fastgan.h"
#include "layers.h"

namespace fastgan {

// The input of the BatchNorm kernel ops called without a layer (the statistics, the backward
// ops), worded as a layer's check_4d.
inline void check_bn_input(const at::Tensor& input) {
  check_float_tensor(input, "input");
  TORCH_CHECK_VALUE(input.dim() == 4, "fastgan: BatchNorm2d expects a 4-D input (N, C, H, W), got a ", input.dim(),
                    "-D tensor of shape ", py_shape(input.sizes()));
}

// Returns whether batch statistics are used (training, or no running statistics). The
// layer checks run first, so a layer's errors name the layer.
inline bool check_batch_norm_act_args(const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                                      const c10::optional<at::Tensor>& bias,
                                      const c10::optional<at::Tensor>& running_mean,
                                      const c10::optional<at::Tensor>& running_var,
                                      const c10::optional<at::Tensor>& num_batches_tracked, bool training,
                                      Activation act) {
  const Layer layer{Weighted::None, Norm::BatchNorm2d, act};
  check_4d(input, "input", layer);
  check_batch_norm(input, weight, bias, running_mean, running_var, layer);
  check_num_batches_tracked(num_batches_tracked, input, layer);
  const bool use_batch = training || !running_mean.has_value() || !running_mean->defined();
  if (use_batch) check_training_batch(input);
  return use_batch;
}

inline void check_batch_norm_act_backward_args(const at::Tensor& grad_out, const at::Tensor& input,
                                               const c10::optional<at::Tensor>& weight,
                                               const c10::optional<at::Tensor>& bias, const at::Tensor& save_mean,
                                               const at::Tensor& save_var) {
  check_bn_input(input);
  check_grad_out(grad_out, input, "input");
  check_channel_vector(weight, input, "weight");
  check_channel_vector(bias, input, "bias");
  check_channel_vector(save_mean, input, "save_mean");
  check_channel_vector(save_var, input, "save_var");
}

// The globally reduced sums the elementwise backward of synchronised BatchNorm divides by the count.
inline void check_backward_elemt_sums(const at::Tensor& input, const at::Tensor& mean_dy,
                                      const at::Tensor& mean_dy_xmu) {
  check_channel_vector(mean_dy, input, "mean_dy");
  check_channel_vector(mean_dy_xmu, input, "mean_dy_xmu");
}

inline void check_update_stats_args(const at::Tensor& running_mean, const at::Tensor& running_var,
                                    const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                                    const at::Tensor& save_var, int64_t count) {
  TORCH_CHECK_VALUE(count > 1, "fastgan: batch_norm_update_stats needs more than one value per channel, got ", count);
  TORCH_CHECK_VALUE(running_mean.dim() == 1 && running_mean.sizes() == running_var.sizes() &&
                        running_mean.sizes() == save_mean.sizes() && running_mean.sizes() == save_var.sizes(),
                    "fastgan: batch_norm_update_stats: running_mean, running_var, save_mean and save_var must be 1-D "
                    "tensors of one value per channel each, got shapes ",
                    py_shape(running_mean.sizes()), ", ", py_shape(running_var.sizes()), ", ",
                    py_shape(save_mean.sizes()), " and ", py_shape(save_var.sizes()));
  TORCH_CHECK_TYPE(running_mean.scalar_type() == running_var.scalar_type(),
                   "fastgan: batch_norm_update_stats: running_mean and running_var must have one dtype, got ",
                   py_dtype(running_mean.scalar_type()), " and ", py_dtype(running_var.scalar_type()));
  for (const at::Tensor* t : {&running_var, &save_mean, &save_var})
    TORCH_CHECK(t->device() == running_mean.device(), "fastgan: batch_norm_update_stats: every tensor must be on ",
                running_mean.device(), ", got one on ", t->device());
  if (num_batches_tracked.has_value() && num_batches_tracked->defined())
    TORCH_CHECK_VALUE(
        num_batches_tracked->numel() == 1 && num_batches_tracked->scalar_type() == at::kLong &&
            num_batches_tracked->device() == running_mean.device(),
        "fastgan: batch_norm_update_stats: num_batches_tracked must be a one-element torch.int64 tensor on ",
        running_mean.device(), ", got ", py_dtype(num_batches_tracked->scalar_type()), " of shape ",
        py_shape(num_batches_tracked->sizes()), " on ", num_batches_tracked->device());
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

}  // namespace fastgan
