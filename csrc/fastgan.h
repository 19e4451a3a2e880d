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

// A per-channel vector as a contiguous tensor of the statistics dtype (undefined stays undefined).
inline at::Tensor as_stats(const c10::optional<at::Tensor>& t, const at::Tensor& input) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  return t->to(stats_dtype(input)).contiguous();
}

}  // namespace fastgan
