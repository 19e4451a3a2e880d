// Autograd for the standalone activation and the fused losses, in C++: one hand-written node
// per op, as the layers' in autograd_layers.cpp (whose opening comment says why).
#include <torch/library.h>

#include "autograd_support.h"

namespace fastgan {
namespace {

using namespace autograd_support;  // NOLINT: the nodes' shared vocabulary

// --- activation -----------------------------------------------------------------------------

struct ActivationBackward final : Node {
  SavedVariable output;
  ActArgs act{};

  std::string name() const override { return "fastgan::ActivationBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    output.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(1);
    const Tensor out = output.unpack(getptr());
    // With create_graph the derivative is written in stock ops of the output, which is
    // itself differentiable (through this node again).
    if (at::GradMode::is_enabled()) return {activation_backward_tensor(act.act(), grad_out, out, act.slope)};
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return {op::activation_backward().call(grad_out, out, act.name, act.slope)};
  }
};

Tensor activation_autograd(const Tensor& input, c10::string_view activation, double negative_slope) {
  refuse_forward_ad("activation", input);
  auto node = make_node<ActivationBackward>(input);
  Tensor out = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::activation().call(input, activation, negative_slope);
  }();
  if (node) {
    torch::autograd::set_history(out, node);
    node->output = SavedVariable(out, /*is_output=*/true);
    node->act = {std::string(activation), negative_slope};
  }
  return out;
}

// --- bce_with_logits ------------------------------------------------------------------------

struct BceWithLogitsBackward final : Node {
  SavedVariable input, target, grad;
  double target_value = 0;
  bool mean = true;

  std::string name() const override { return "fastgan::BceWithLogitsBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&input, &target, &grad}) v->reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list result(2);
    const Tensor& grad_loss = grads[0];
    if (!grad_loss.defined()) return result;
    const Tensor x = input.unpack(), t = target.unpack();
    // The mean's 1/n, with n symbolic when torch.compile traces dynamic shapes.
    const auto per_element = [&] { return mean ? grad_loss / c10::Scalar(x.sym_numel()) : grad_loss; };
    if (task_should_compute_output(0)) {
      if (at::GradMode::is_enabled()) {
        const Tensor sig = at::sigmoid(x);
        result[0] = (t.defined() ? sig - t : sig - target_value) * per_element();
      } else {
        result[0] = grad.unpack() * grad_loss;  // the stored gradient, scaled: one elementwise op
      }
    }
    if (task_should_compute_output(1)) result[1] = -x * per_element();
    return result;
  }
};

std::tuple<Tensor, Tensor> bce_with_logits_autograd(const Tensor& input, const OptTensor& target, double target_value,
                                                    int64_t reduction) {
  refuse_forward_ad("bce_with_logits", input, value_or_undefined(target));
  auto node = make_node<BceWithLogitsBackward>(input, target);
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::bce_with_logits().call(input, target, target_value, reduction);
  }();
  if (node) {
    const auto& [loss, grad] = result;
    torch::autograd::set_history(loss, node);
    node->input = save(input), node->target = save(target), node->grad = save(grad);
    node->target_value = target_value;
    node->mean = reduction == int64_t(Reduction::Mean);
  }
  return result;
}

// --- logit_loss -----------------------------------------------------------------------------

struct LogitLossBackward final : Node {
  SavedVariable input, grad;
  std::string kind;
  double target = 0;
  bool mean = true;

  std::string name() const override { return "fastgan::LogitLossBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    input.reset_data();
    grad.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_loss = grads[0];
    if (!grad_loss.defined() || !task_should_compute_output(0)) return variable_list(1);
    if (!at::GradMode::is_enabled()) return {grad.unpack() * grad_loss};  // the stored gradient, scaled
    const Tensor x = input.unpack();
    const Tensor per_element = mean ? grad_loss / c10::Scalar(x.sym_numel()) : grad_loss;
    return {logit_loss_grad_tensor(parse_loss_kind(kind), x, target) * per_element};
  }
};

std::tuple<Tensor, Tensor> logit_loss_autograd(const Tensor& input, double target, c10::string_view kind,
                                               int64_t reduction) {
  refuse_forward_ad("logit_loss", input);
  auto node = make_node<LogitLossBackward>(input);
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::logit_loss().call(input, target, kind, reduction);
  }();
  if (node) {
    const auto& [loss, grad] = result;
    torch::autograd::set_history(loss, node);
    node->input = save(input), node->grad = save(grad);
    node->kind = std::string(kind);
    node->target = target;
    node->mean = reduction == int64_t(Reduction::Mean);
  }
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("activation", &activation_autograd);
  m.impl("bce_with_logits", &bce_with_logits_autograd);
  m.impl("logit_loss", &logit_loss_autograd);
}

}  // namespace fastgan
