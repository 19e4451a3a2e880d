// Declarations shared by the CPU and CUDA kernels of every op: layouts, dtypes, the BatchNorm
// geometry. The shared argument checks are in checks.h; each op's own checks and input
// preparation in args/<op>.h.
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

}  // namespace fastgan
