// The GAN losses on D's logits at one point, with their gradient: one definition for the CPU
// loops and the CUDA kernel (as the activations' table is), so the two cannot drift apart.
// fastgan/losses.py composes D's and G's losses from them; fastgan/reference.py holds the same
// formulas as stock ops.
//   bce     max(x, 0) - x t + log1p(exp(-|x|))           sigmoid(x) - t
//   hinge   max(0, 1 - s x), s = 2t - 1 (t: 1 or 0)        -s where 1 - s x > 0, else 0
//   lsgan   (x - t)^2 / 2                                 x - t
//   linear  -s x (the Wasserstein terms; G's hinge loss)  -s
#pragma once

#include <ATen/ATen.h>

#include "activations.h"

namespace fastgan {

enum class LossKind : int { BCE = 0, Hinge = 1, LeastSquares = 2, Linear = 3 };

// A loss op's reduction argument, numbered as torch's (at::Reduction): none, mean, sum.
enum class Reduction : int64_t { None = 0, Mean = 1, Sum = 2 };

// The one C++ table of the logit losses' names (sorted, as the error below lists them), as
// fastgan/reference.py's LOGIT_LOSSES spells them; and of the reductions' numbers, as
// fastgan/_checks.py's REDUCTIONS numbers them. fastgan._C exports both; tests/test_op_contract.py
// checks them against Python's.
struct LossKindEntry {
  const char* name;
  LossKind kind;
};
inline constexpr LossKindEntry kLogitLosses[] = {{"bce", LossKind::BCE},
                                                 {"hinge", LossKind::Hinge},
                                                 {"linear", LossKind::Linear},
                                                 {"lsgan", LossKind::LeastSquares}};

struct ReductionEntry {
  const char* name;
  Reduction reduction;
};
inline constexpr ReductionEntry kReductions[] = {
    {"none", Reduction::None}, {"mean", Reduction::Mean}, {"sum", Reduction::Sum}};

inline LossKind parse_loss_kind(c10::string_view name) {
  for (const LossKindEntry& e : kLogitLosses)
    if (name == e.name) return e.kind;
  // Worded as fastgan/_checks.py words it.
  TORCH_CHECK_VALUE(false, "fastgan: unknown logit loss '", std::string(name), "'; expected one of ",
                    python_list_of_names(kLogitLosses));
}

// hinge and linear read the target as a side (1: real, 0: fake), so only those two are allowed.
inline bool loss_takes_a_side(LossKind k) { return k == LossKind::Hinge || k == LossKind::Linear; }

template <LossKind K, typename T>
FASTGAN_INLINE void loss_point(T x, T t, T& loss, T& grad) {
  if constexpr (K == LossKind::BCE) {
    bce_point(x, t, loss, grad);
  } else if constexpr (K == LossKind::Hinge) {
    const T s = T(2) * t - T(1), m = T(1) - s * x;
    const bool on = !(m <= T(0));  // NaN propagates, as through torch.relu
    loss = on ? m : T(0);
    grad = on ? -s : T(0);
  } else if constexpr (K == LossKind::LeastSquares) {
    const T d = x - t;
    loss = T(0.5) * d * d;
    grad = d;
  } else {
    const T s = T(2) * t - T(1);
    loss = -s * x;
    grad = -s;
  }
}

template <LossKind K>
using LossTag = std::integral_constant<LossKind, K>;

template <typename F>
FASTGAN_INLINE decltype(auto) dispatch_loss_kind(LossKind k, F&& f) {
  switch (k) {
    case LossKind::Hinge: return f(LossTag<LossKind::Hinge>());
    case LossKind::LeastSquares: return f(LossTag<LossKind::LeastSquares>());
    case LossKind::Linear: return f(LossTag<LossKind::Linear>());
    default: return f(LossTag<LossKind::BCE>());
  }
}

// d loss / d x as a tensor function of differentiable ATen ops (the double-backward path), the
// tensor form of loss_point's gradient above.
inline at::Tensor logit_loss_grad_tensor(LossKind kind, const at::Tensor& x, double t) {
  const double s = 2.0 * t - 1.0;
  switch (kind) {
    case LossKind::Hinge: return at::where(1.0 - s * x <= 0, at::zeros_like(x), at::full_like(x, -s));
    case LossKind::LeastSquares: return x - t;
    case LossKind::Linear: return at::full_like(x, -s);
    default: return at::sigmoid(x) - t;
  }
}

}  // namespace fastgan
