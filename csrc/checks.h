// The argument checks the fastgan ops share, one set for the CPU and the CUDA kernels; each
// op's own checks, and the input preparation its CPU and CUDA ops share, are in args/<op>.h,
// the fused layers' (conv, linear, BatchNorm parameters) in args/layers.h.
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

// --- Shared by the layer checks (args/layers.h) and the ops: the same messages as fastgan/_checks.py

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
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == input.size(1), "fastgan: ", name, " must be a 1-D tensor of ",
                    input.size(1), " elements (one per channel), got shape ", py_shape(t->sizes()));
  check_same_device(*t, input, name);
  check_float_tensor(*t, name);
}

inline void check_grad_out(const at::Tensor& grad_out, const at::Tensor& like, const char* like_name) {
  check_float_tensor(grad_out, "grad_out");
  TORCH_CHECK_VALUE(grad_out.sizes() == like.sizes(), "fastgan: grad_out has shape ", py_shape(grad_out.sizes()),
                    " but ", like_name, " has shape ", py_shape(like.sizes()));
  TORCH_CHECK(grad_out.device() == like.device(), "fastgan: grad_out is on ", grad_out.device(), " but ", like_name,
              " is on ", like.device());
}

}  // namespace fastgan
