// Every argument check of the fastgan ops, one set for the CPU and the CUDA kernels.
//
// The layer checks (first half) run on the hot path of the fused layers and must say
// exactly what fastgan/_checks.py says on the reference path: same exception type, same
// text, so switching backends never changes what bad input does (tests/test_bad_input.py
// compares the two). Values are therefore printed the way Python prints them.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <charconv>
#include <ostream>
#include <sstream>
#include <string>

#include "logit_losses.h"

#include "activations.h"

namespace fastgan {

// --- Python's way of printing values ------------------------------------------------------

inline std::string py_shape(at::IntArrayRef sizes) {  // tuple(t.shape): (2, 3), (4,), ()
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << (sizes.size() == 1 ? ",)" : ")");
  return s.str();
}

inline std::string torch_size(at::IntArrayRef sizes) {  // t.size(): torch.Size([2, 3])
  std::ostringstream s;
  s << "torch.Size([";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "])";
  return s.str();
}

inline std::string py_dtype(at::ScalarType t) {  // torch.float32
  return "torch." + std::string(c10::getDtypeNames(t).first);
}

inline std::string py_float(double v) {  // repr(float): shortest round trip, "-1.0", "1e-05"
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}

// --- Layer checks: the same messages as fastgan/_checks.py --------------------------------

inline bool is_float_dtype(const at::Tensor& t) {
  auto s = t.scalar_type();
  return s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16;
}

// The stock modules a fused layer stands for, printed "ConvTranspose2d+BatchNorm2d+ReLU".
// Printed only when a check fails, so the hot path never builds the string.
enum class Weighted { None, Conv2d, ConvTranspose2d, Linear };  // the layer's weighted module
enum class Norm { None, BatchNorm2d };

inline Weighted conv_module(bool transposed) { return transposed ? Weighted::ConvTranspose2d : Weighted::Conv2d; }

struct Layer {
  Weighted weighted;
  Norm norm;
  Activation act;
};

inline const char* module_name(Weighted w) {
  switch (w) {
    case Weighted::Conv2d: return "Conv2d";
    case Weighted::ConvTranspose2d: return "ConvTranspose2d";
    case Weighted::Linear: return "Linear";
    default: return "";
  }
}

inline std::ostream& operator<<(std::ostream& out, const Layer& layer) {
  const char* parts[] = {module_name(layer.weighted), layer.norm == Norm::BatchNorm2d ? "BatchNorm2d" : "",
                         activation_module_name(layer.act)};
  bool first = true;
  for (const char* part : parts) {
    if (!*part) continue;
    out << (first ? "" : "+") << part;
    first = false;
  }
  return out;
}

inline void check_float_tensor(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.defined(), "fastgan: ", name, " must be a torch.Tensor, got NoneType");
  TORCH_CHECK_TYPE(is_float_dtype(t), "fastgan: ", name,
                   " must be a floating-point tensor (float32, float64, float16 or bfloat16), got ",
                   py_dtype(t.scalar_type()));
}

inline void check_4d(const at::Tensor& t, const char* name, const Layer& layer) {
  check_float_tensor(t, name);
  TORCH_CHECK_VALUE(t.dim() == 4, "fastgan: ", layer, " expects a 4-D ", name, " (N, C, H, W), got a ", t.dim(),
                    "-D tensor of shape ", py_shape(t.sizes()));
}

// One device and one dtype for a layer's input and weight (the autocast kernels cast both first).
inline void check_input_matches_weight(const at::Tensor& x, const at::Tensor& weight, const Layer& layer) {
  TORCH_CHECK_VALUE(x.device() == weight.device(), "fastgan: ", layer, ": input is on ", x.device(),
                    " but weight is on ", weight.device());
  TORCH_CHECK_TYPE(x.scalar_type() == weight.scalar_type(), "fastgan: ", layer, ": input dtype ",
                   py_dtype(x.scalar_type()), " does not match weight dtype ", py_dtype(weight.scalar_type()),
                   "; convert one of them (e.g. model.to(", py_dtype(x.scalar_type()), ") or input.to(",
                   py_dtype(weight.scalar_type()), "))");
}

inline void check_conv(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups, bool transposed, const Layer& layer) {
  check_4d(x, "input", layer);
  check_float_tensor(weight, "weight");
  TORCH_CHECK_VALUE(weight.dim() == 4, "fastgan: ", layer, " expects a 4-D weight, got shape ",
                    py_shape(weight.sizes()));
  const int64_t expected = transposed ? weight.size(0) : weight.size(1) * groups;
  TORCH_CHECK_VALUE(x.size(1) == expected, "fastgan: ", layer, " expects input with ", expected,
                    " channels (from its weight of shape ", py_shape(weight.sizes()), "), got ", x.size(1),
                    " channels in input of shape ", py_shape(x.sizes()));
  check_input_matches_weight(x, weight, layer);
  if (transposed) return;
  static const char* axes[] = {"height", "width"};
  for (int axis = 0; axis < 2; ++axis) {
    const int64_t p = padding.size() == 1 ? padding[0] : padding[axis];
    const int64_t d = dilation.size() == 1 ? dilation[0] : dilation[axis];
    const int64_t extent = d * (weight.size(2 + axis) - 1) + 1;
    TORCH_CHECK_VALUE(x.size(2 + axis) + 2 * p >= extent, "fastgan: ", layer, ": input ", axes[axis], " ",
                      x.size(2 + axis), " (+ 2*padding ", p, ") is smaller than the kernel's extent ", extent,
                      "; input shape ", py_shape(x.sizes()));
  }
}

// nn.Linear's arguments: input (*, in_features), weight (out_features, in_features), bias
// (out_features,), all on one device and of one dtype.
inline void check_linear(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const Layer& layer) {
  check_float_tensor(x, "input");
  check_float_tensor(weight, "weight");
  TORCH_CHECK_VALUE(weight.dim() == 2, "fastgan: ", layer, " expects a 2-D weight (out_features, in_features), got "
                    "shape ", py_shape(weight.sizes()));
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == weight.size(1), "fastgan: ", layer, " expects input with ",
                    weight.size(1), " features in its last dimension (from its weight of shape ",
                    py_shape(weight.sizes()), "), got input of shape ", py_shape(x.sizes()));
  check_input_matches_weight(x, weight, layer);
  if (!bias.has_value() || !bias->defined()) return;
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0), "fastgan: ", layer, ": bias has shape ",
                    py_shape(bias->sizes()), " but the weight has ", weight.size(0), " output features");
  TORCH_CHECK_VALUE(bias->device() == weight.device(), "fastgan: ", layer, ": bias is on ", bias->device(),
                    " but weight is on ", weight.device());
  TORCH_CHECK_TYPE(bias->scalar_type() == weight.scalar_type(), "fastgan: ", layer, ": bias dtype ",
                   py_dtype(bias->scalar_type()), " does not match weight dtype ", py_dtype(weight.scalar_type()));
}

// BatchNorm's per-channel tensors: one value per channel, on the input's device, floating point.
inline void check_bn_params(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                            const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& running_mean,
                            const c10::optional<at::Tensor>& running_var, const Layer& layer) {
  const std::pair<const char*, const c10::optional<at::Tensor>*> params[] = {
      {"weight", &weight}, {"bias", &bias}, {"running_mean", &running_mean}, {"running_var", &running_var}};
  for (const auto& [name, t] : params) {
    if (!t->has_value() || !(*t)->defined()) continue;
    const at::Tensor& v = **t;
    TORCH_CHECK_VALUE(v.dim() == 1 && v.numel() == x.size(1), "fastgan: ", layer, ": BatchNorm ", name,
                      " has shape ", py_shape(v.sizes()), " but the input has ", x.size(1),
                      " channels (input shape ", py_shape(x.sizes()), ")");
    TORCH_CHECK_VALUE(v.device() == x.device(), "fastgan: ", layer, ": BatchNorm ", name, " is on ", v.device(),
                      " but input is on ", x.device());
    TORCH_CHECK_TYPE(is_float_dtype(v), "fastgan: ", layer, ": BatchNorm ", name,
                     " must be a floating-point tensor, got ", py_dtype(v.scalar_type()));
  }
  const bool has_mean = running_mean.has_value() && running_mean->defined();
  const bool has_var = running_var.has_value() && running_var->defined();
  TORCH_CHECK_VALUE(has_mean == has_var, "fastgan: ", layer,
                    ": give both running_mean and running_var, or neither");
}

// Same message as torch.nn.functional.batch_norm, so code that catches it keeps working.
inline void check_training_batch(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.size(0) * x.size(2) * x.size(3) != 1,
                    "Expected more than 1 value per channel when training, got input size ", torch_size(x.sizes()));
}

inline void check_num_batches_tracked(const c10::optional<at::Tensor>& t, const at::Tensor& x,
                                      const Layer& layer) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK_VALUE(t->numel() == 1 && t->scalar_type() == at::kLong && t->device() == x.device(), "fastgan: ",
                    layer, ": num_batches_tracked must be a one-element torch.int64 tensor on ", x.device(),
                    ", got ", py_dtype(t->scalar_type()), " of shape ", py_shape(t->sizes()), " on ", t->device());
}

// The backward of an activation saved without its input reads the sign from the output.
inline void check_negative_slope(Activation act, double negative_slope, const Layer& layer) {
  TORCH_CHECK_VALUE(act != Activation::LeakyReLU || negative_slope >= 0, "fastgan: ", layer,
                    ": negative_slope must be >= 0 (the backward reads the sign from the output), got ",
                    py_float(negative_slope));
}

// --- Op checks: what the kernels need, for ops called directly ----------------------------

inline void check_same_device(const at::Tensor& t, const at::Tensor& input, const char* name) {
  TORCH_CHECK(t.device() == input.device(), "fastgan: ", name, " is on ", t.device(), " but input is on ",
              input.device());
}

inline void check_channel_vector(const c10::optional<at::Tensor>& t, const at::Tensor& input,
                                 const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == input.size(1), "fastgan: ", name,
              " must be a 1-D tensor of ", input.size(1), " elements (one per channel), got shape ",
              t->sizes());
  check_same_device(*t, input, name);
  TORCH_CHECK(is_float_dtype(*t), "fastgan: ", name, " must be floating point, got ", t->scalar_type());
}

inline void check_bn_input(const at::Tensor& input) {
  check_float_tensor(input, "input");
  TORCH_CHECK(input.dim() == 4, "fastgan: batch_norm_act expects a 4-D input (N, C, H, W), got ",
              input.dim(), "-D input of shape ", input.sizes());
}

inline void check_grad_out(const at::Tensor& grad_out, const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(grad_out.defined(), "fastgan: grad_out is undefined");
  TORCH_CHECK(grad_out.sizes() == like.sizes(), "fastgan: grad_out has shape ", grad_out.sizes(), " but ",
              like_name, " has shape ", like.sizes());
  TORCH_CHECK(grad_out.device() == like.device(), "fastgan: grad_out is on ", grad_out.device(), " but ",
              like_name, " is on ", like.device());
  TORCH_CHECK(is_float_dtype(grad_out), "fastgan: grad_out must be floating point, got ", grad_out.scalar_type());
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
  check_bn_params(input, weight, bias, running_mean, running_var, layer);
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
inline void check_backward_elemt_sums(const at::Tensor& input, const at::Tensor& mean_dy, const at::Tensor& mean_dy_xmu) {
  check_channel_vector(mean_dy, input, "mean_dy");
  check_channel_vector(mean_dy_xmu, input, "mean_dy_xmu");
}

inline void check_update_stats_args(const at::Tensor& running_mean, const at::Tensor& running_var,
                                    const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                                    const at::Tensor& save_var, int64_t count) {
  TORCH_CHECK(count > 1, "fastgan: batch_norm_update_stats needs more than one value per channel, got ", count);
  TORCH_CHECK(running_mean.numel() == save_mean.numel() && running_var.numel() == save_var.numel() &&
                  running_mean.numel() == running_var.numel(),
              "fastgan: running stats and batch stats must have one value per channel each");
  TORCH_CHECK(running_mean.scalar_type() == running_var.scalar_type(),
              "fastgan: running_mean and running_var must have the same dtype");
  for (const at::Tensor* t : {&running_var, &save_mean, &save_var})
    TORCH_CHECK(t->device() == running_mean.device(), "fastgan: batch_norm_update_stats: every tensor must be on ",
                running_mean.device(), ", got one on ", t->device());
  if (num_batches_tracked.has_value() && num_batches_tracked->defined())
    TORCH_CHECK(num_batches_tracked->numel() == 1 && num_batches_tracked->scalar_type() == at::kLong &&
                    num_batches_tracked->device() == running_mean.device(),
                "fastgan: num_batches_tracked must be a one-element int64 tensor on ", running_mean.device(), ", got ",
                num_batches_tracked->scalar_type(), " of shape ", num_batches_tracked->sizes(), " on ",
                num_batches_tracked->device());
}

inline void check_activation_backward_args(const at::Tensor& grad_out, const at::Tensor& output) {
  check_float_tensor(output, "output");
  check_grad_out(grad_out, output, "output");
}

// bias_act's operands: input (*, C) and a bias of C values, of the input's dtype and device.
inline void check_bias_act_args(const at::Tensor& input, const at::Tensor& bias) {
  check_float_tensor(input, "input");
  TORCH_CHECK(bias.defined(), "fastgan: bias is undefined");
  TORCH_CHECK_VALUE(input.dim() >= 1 && bias.dim() == 1 && bias.size(0) == input.size(-1),
                    "fastgan: bias_act adds a bias of shape (C,) along the last dimension of input (*, C), got bias "
                    "of shape ", py_shape(bias.sizes()), " and input of shape ", py_shape(input.sizes()));
  check_same_device(bias, input, "bias");
  TORCH_CHECK_TYPE(bias.scalar_type() == input.scalar_type(), "fastgan: bias dtype ", py_dtype(bias.scalar_type()),
                   " does not match input dtype ", py_dtype(input.scalar_type()));
}

// bias_act_backward's: the gradient of an output (*, C) of bias_act.
inline void check_bias_act_backward_args(const at::Tensor& grad_out, const at::Tensor& output) {
  check_activation_backward_args(grad_out, output);
  TORCH_CHECK_VALUE(output.dim() >= 1, "fastgan: bias_act_backward expects an output of shape (*, C), got a 0-D "
                    "tensor");
}

// Returns whether a target tensor was given. Worded as fastgan/_checks.py check_bce (the
// size message is torch's own).
inline bool check_loss_args(const at::Tensor& input, const c10::optional<at::Tensor>& target, int64_t reduction) {
  check_float_tensor(input, "input");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2,
                    "fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  const bool has_target = target.has_value() && target->defined();
  if (has_target) {
    TORCH_CHECK_VALUE(target->sizes() == input.sizes(), "Target size (", torch_size(target->sizes()),
                      ") must be the same as input size (", torch_size(input.sizes()), ")");
    TORCH_CHECK_TYPE(target->is_floating_point(), "fastgan: target must be a floating-point tensor, got ",
                     py_dtype(target->scalar_type()));
    TORCH_CHECK_VALUE(target->device() == input.device(), "fastgan: target is on ", target->device(),
                      " but input is on ", input.device());
  }
  return has_target;
}

// The logit-loss op's arguments; returns the kind. Worded as fastgan/_checks.py
// check_logit_loss.
inline LossKind check_logit_loss_args(const at::Tensor& input, double target, c10::string_view kind,
                                      int64_t reduction) {
  check_float_tensor(input, "input");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2,
                    "fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  const LossKind k = parse_loss_kind(kind);
  TORCH_CHECK_VALUE(!loss_takes_a_side(k) || target == 0.0 || target == 1.0, "fastgan: the ", std::string(kind),
                    " loss takes target 1.0 (real) or 0.0 (fake), got ", target);
  return k;
}

}  // namespace fastgan
