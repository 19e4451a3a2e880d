// The argument checks the fastgan ops share, one set for the CPU and the CUDA kernels; each
// op's own checks, and the input preparation its CPU and CUDA ops share, are in args/<op>.h.
//
// The layer checks run on the hot path of the fused layers and must say
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
    TORCH_CHECK_VALUE(v.dim() == 1 && v.numel() == x.size(1), "fastgan: ", layer, ": BatchNorm ", name, " has shape ",
                      py_shape(v.sizes()), " but the input has ", x.size(1), " channels (input shape ",
                      py_shape(x.sizes()), ")");
    TORCH_CHECK_VALUE(v.device() == x.device(), "fastgan: ", layer, ": BatchNorm ", name, " is on ", v.device(),
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

// The backward of an activation saved without its input reads the sign from the output.
// `where`: the layer (a Layer) or the op (its name) the slope was given to.
template <typename Where>
inline void check_negative_slope(Activation act, double negative_slope, const Where& where) {
  TORCH_CHECK_VALUE(act != Activation::LeakyReLU || negative_slope >= 0, "fastgan: ", where,
                    ": negative_slope must be >= 0 (the backward reads the sign from the output), got ",
                    py_float(negative_slope));
}

// --- Op checks: what the kernels need, for ops called directly ----------------------------

inline void check_same_device(const at::Tensor& t, const at::Tensor& input, const char* name) {
  TORCH_CHECK(t.device() == input.device(), "fastgan: ", name, " is on ", t.device(), " but input is on ",
              input.device());
}

inline void check_channel_vector(const c10::optional<at::Tensor>& t, const at::Tensor& input, const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == input.size(1), "fastgan: ", name, " must be a 1-D tensor of ",
              input.size(1), " elements (one per channel), got shape ", t->sizes());
  check_same_device(*t, input, name);
  TORCH_CHECK(is_float_dtype(*t), "fastgan: ", name, " must be floating point, got ", t->scalar_type());
}

inline void check_grad_out(const at::Tensor& grad_out, const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(grad_out.defined(), "fastgan: grad_out is undefined");
  TORCH_CHECK(grad_out.sizes() == like.sizes(), "fastgan: grad_out has shape ", grad_out.sizes(), " but ", like_name,
              " has shape ", like.sizes());
  TORCH_CHECK(grad_out.device() == like.device(), "fastgan: grad_out is on ", grad_out.device(), " but ", like_name,
              " is on ", like.device());
  TORCH_CHECK(is_float_dtype(grad_out), "fastgan: grad_out must be floating point, got ", grad_out.scalar_type());
}

}  // namespace fastgan
