// The loss ops' arguments (bce_with_logits, logit_loss): their checks and the preparation the
// CPU and CUDA ops share. Worded as fastgan/_checks.py check_bce / check_logit_loss.
#pragma once

#include "../fastgan.h"

namespace fastgan {

// Returns whether a target tensor was given. Worded as fastgan/_checks.py check_bce (the
// size message is torch's own).
inline bool check_loss_args(const at::Tensor& input, const c10::optional<at::Tensor>& target, int64_t reduction) {
  check_float_tensor(input, "input");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got ",
                    reduction);
  const bool has_target = target.has_value() && target->defined();
  if (has_target) {
    TORCH_CHECK_VALUE(target->sizes() == input.sizes(), "Target size (", torch_size(target->sizes()),
                      ") must be the same as input size (", torch_size(input.sizes()), ")");
    TORCH_CHECK_TYPE(target->is_floating_point(), "fastgan: target must be a floating-point tensor, got ",
                     py_dtype(target->scalar_type()));
    TORCH_CHECK(target->device() == input.device(), "fastgan: target is on ", target->device(), " but input is on ",
                input.device());
  }
  return has_target;
}

// The logit-loss op's arguments; returns the kind. Worded as fastgan/_checks.py
// check_logit_loss.
inline LossKind check_logit_loss_args(const at::Tensor& input, double target, c10::string_view kind,
                                      int64_t reduction) {
  check_float_tensor(input, "input");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got ",
                    reduction);
  const LossKind k = parse_loss_kind(kind);
  TORCH_CHECK_VALUE(!loss_takes_a_side(k) || target == 0.0 || target == 1.0, "fastgan: the ", std::string(kind),
                    " loss takes target 1.0 (real) or 0.0 (fake), got ", target);
  return k;
}

// The inputs and outputs of the loss kernels (bce_with_logits, logit_loss) in the input's layout.
// Shared by CPU and CUDA.
struct LossTensors {
  at::Tensor input, target, grad, loss;
  bool has_target;
  Reduction reduction;
};

inline LossTensors loss_tensors(const at::Tensor& input, const c10::optional<at::Tensor>& target, int64_t reduction) {
  LossTensors b;
  b.has_target = check_loss_args(input, target, reduction);
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
