// The fused layers' argument checks (conv_bn_act, conv_act, linear_act, batch_norm_act): the
// input, weight and BatchNorm parameters of the stock modules a layer stands for, worded as
// fastgan/_checks.py words them on the reference path (tests/test_bad_input.py compares the two).
#pragma once

#include "../fastgan.h"

namespace fastgan {

inline void check_4d(const at::Tensor& t, const char* name, const Layer& layer) {
  check_float_tensor(t, name);
  TORCH_CHECK_VALUE(t.dim() == 4, "fastgan: ", layer, " expects a 4-D ", name, " (N, C, H, W), got a ", t.dim(),
                    "-D tensor of shape ", py_shape(t.sizes()));
}

// One device and one dtype for a layer's input and weight (the autocast kernels cast both first).
inline void check_input_matches_weight(const at::Tensor& x, const at::Tensor& weight, const Layer& layer) {
  TORCH_CHECK(x.device() == weight.device(), "fastgan: ", layer, ": input is on ", x.device(), " but weight is on ",
              weight.device());
  TORCH_CHECK_TYPE(x.scalar_type() == weight.scalar_type(), "fastgan: ", layer, ": input dtype ",
                   py_dtype(x.scalar_type()), " does not match weight dtype ", py_dtype(weight.scalar_type()),
                   "; convert one of them (e.g. model.to(", py_dtype(x.scalar_type()), ") or input.to(",
                   py_dtype(weight.scalar_type()), "))");
}

inline void check_conv(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef padding, at::IntArrayRef dilation,
                       int64_t groups, bool transposed, const Layer& layer) {
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
  TORCH_CHECK_VALUE(weight.dim() == 2, "fastgan: ", layer,
                    " expects a 2-D weight (out_features, in_features), got "
                    "shape ",
                    py_shape(weight.sizes()));
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == weight.size(1), "fastgan: ", layer, " expects input with ",
                    weight.size(1), " features in its last dimension (from its weight of shape ",
                    py_shape(weight.sizes()), "), got input of shape ", py_shape(x.sizes()));
  check_input_matches_weight(x, weight, layer);
  if (!bias.has_value() || !bias->defined()) return;
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0), "fastgan: ", layer, ": bias has shape ",
                    py_shape(bias->sizes()), " but the weight has ", weight.size(0), " output features");
  TORCH_CHECK(bias->device() == weight.device(), "fastgan: ", layer, ": bias is on ", bias->device(),
              " but weight is on ", weight.device());
  TORCH_CHECK_TYPE(bias->scalar_type() == weight.scalar_type(), "fastgan: ", layer, ": bias dtype ",
                   py_dtype(bias->scalar_type()), " does not match weight dtype ", py_dtype(weight.scalar_type()));
}

// BatchNorm's per-channel tensors: one value per channel, on the input's device, floating point.
inline void check_batch_norm(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                             const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& running_mean,
                             const c10::optional<at::Tensor>& running_var, const Layer& layer) {
  const std::pair<const char*, const c10::optional<at::Tensor>*> params[] = {
      {"weight", &weight}, {"bias", &bias}, {"running_mean", &running_mean}, {"running_var", &running_var}};
  for (const auto& [name, t] : params) {
    if (!t->has_value() || !(*t)->defined()) continue;
    const at::Tensor& v = **t;
    TORCH_CHECK_VALUE(v.dim() == 1 && v.numel() == x.size(1), "fastgan: ", layer, ": BatchNorm ", name, " has shape ",
                      py_shape(v.sizes()), " but the input has ", x.size(1), " channels (input shape ",
                      py_shape(x.sizes()), ")");
    TORCH_CHECK(v.device() == x.device(), "fastgan: ", layer, ": BatchNorm ", name, " is on ", v.device(),
                " but input is on ", x.device());
    TORCH_CHECK_TYPE(is_float_dtype(v), "fastgan: ", layer, ": BatchNorm ", name,
                     " must be a floating-point tensor, got ", py_dtype(v.scalar_type()));
  }
  const bool has_mean = running_mean.has_value() && running_mean->defined();
  const bool has_var = running_var.has_value() && running_var->defined();
  TORCH_CHECK_VALUE(has_mean == has_var, "fastgan: ", layer, ": give both running_mean and running_var, or neither");
}

// Same message as torch.nn.functional.batch_norm, so code that catches it keeps working.
inline void check_training_batch(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.size(0) * x.size(2) * x.size(3) != 1,
                    "Expected more than 1 value per channel when training, got input size ", torch_size(x.sizes()));
}

inline void check_num_batches_tracked(const c10::optional<at::Tensor>& t, const at::Tensor& x, const Layer& layer) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK_VALUE(t->numel() == 1 && t->scalar_type() == at::kLong && t->device() == x.device(), "fastgan: ", layer,
                    ": num_batches_tracked must be a one-element torch.int64 tensor on ", x.device(), ", got ",
                    py_dtype(t->scalar_type()), " of shape ", py_shape(t->sizes()), " on ", t->device());
}

}  // namespace fastgan
