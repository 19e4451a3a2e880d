// The schemas of the kernel ops, which every device implements. Defined once, here, for the
// fastgan library (ops.cpp) and for the test-only library of emulated CUDA kernels
// (csrc/emu), so that the two cannot take different arguments.
#pragma once

#include <torch/library.h>

namespace fastgan {

inline void define_kernel_ops(torch::Library& m) {
  // Training: normalise with batch statistics and return them (mean, biased variance),
  // and update the running statistics as nn.BatchNorm2d does (num_batches_tracked += 1;
  // running = (1 - f) * running + f * batch, unbiased variance; f = momentum, or
  // 1 / num_batches_tracked when momentum is None, or 0 when both are None).
  // Eval: normalise with running_mean/running_var and return those.
  m.def(
      "batch_norm_act(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!)? running_mean, "
      "Tensor(b!)? running_var, Tensor(c!)? num_batches_tracked, bool training, float? momentum, float eps, "
      "str activation, float negative_slope) -> (Tensor, Tensor, Tensor)");
  // Returns (grad_input, grad_weight, grad_bias); the activation's mask is recomputed
  // from input and the saved statistics.
  m.def(
      "batch_norm_act_backward(Tensor grad_out, Tensor input, Tensor? weight, Tensor? bias, "
      "Tensor save_mean, Tensor save_var, bool training, float eps, str activation, "
      "float negative_slope) -> (Tensor, Tensor, Tensor)");
  // The running-stat update on its own (batch_norm_act does it inside).
  m.def(
      "batch_norm_update_stats(Tensor(a!) running_mean, Tensor(b!) running_var, "
      "Tensor(c!)? num_batches_tracked, Tensor save_mean, Tensor save_var, float? momentum, "
      "SymInt count) -> ()");
  // Synchronised BatchNorm runs the fused op in three steps so the caller can all-reduce
  // per-channel sums between them: batch_norm_stats (mean, biased var of this rank's
  // input), then batch_norm_act with training=False and the global statistics as
  // running_mean/running_var. The backward likewise: the reduction returns the two sums
  // sum(g) and sum(g * (x - mean)), g = grad_out * act'; the elementwise op takes them
  // divided by the global count.
  m.def("batch_norm_stats(Tensor input) -> (Tensor, Tensor)");
  m.def(
      "batch_norm_act_backward_reduce(Tensor grad_out, Tensor input, Tensor? weight, Tensor? bias, "
      "Tensor mean, Tensor var, float eps, str activation, float negative_slope) -> (Tensor, Tensor)");
  m.def(
      "batch_norm_act_backward_elemt(Tensor grad_out, Tensor input, Tensor? weight, Tensor? bias, "
      "Tensor mean, Tensor var, Tensor mean_dy, Tensor mean_dy_xmu, float eps, str activation, "
      "float negative_slope) -> Tensor");
  m.def("activation(Tensor input, str activation, float negative_slope) -> Tensor");
  m.def(
      "activation_backward(Tensor grad_out, Tensor output, str activation, "
      "float negative_slope) -> Tensor");
  // A Linear layer's bias and activation: act(input + bias), bias (C,) added along the last
  // dimension of input (*, C).
  m.def("bias_act(Tensor input, Tensor bias, str activation, float negative_slope) -> Tensor");
  // Returns (g, grad_bias): g = grad_out * act'(output) and its sum over every row, from one
  // pass over grad_out and output.
  m.def("bias_act_backward(Tensor grad_out, Tensor output, str activation, float negative_slope) -> (Tensor, Tensor)");
  // Returns (loss, d loss / d input). target=None uses target_value for every element.
  // reduction: 0 none, 1 mean, 2 sum.
  m.def(
      "bce_with_logits(Tensor input, Tensor? target, float target_value, int reduction) "
      "-> (Tensor, Tensor)");
  // The GAN losses on logits (csrc/logit_losses.h: bce, hinge, lsgan, linear) against one
  // target value, with d loss / d input, in one pass.
  m.def("logit_loss(Tensor input, float target, str kind, int reduction) -> (Tensor, Tensor)");
}

}  // namespace fastgan
