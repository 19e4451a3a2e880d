// Autograd for every differentiable fastgan op, in C++: each op's Autograd kernel records one
// hand-written graph node, as torch's generated autograd kernels do (VariableType), so an
// eager call never enters Python. A node holds exactly what its backward reads: saved tensors
// (torch::autograd::SavedVariable, so in-place changes are caught and saved-tensor hooks
// apply) and plain C++ fields for the rest. torch::autograd::Function would do the same
// job, but it keeps the non-tensor arguments in a string-keyed map of IValues, records
// metadata for every input and output, and its backward calls the inner ops above the
// autograd key; on tiny layers that cost more host time than the stock layers it replaces.
//
// The backward runs the op's registered backward op below the autograd key. When a second
// derivative is asked for (backward with create_graph=True: gradient penalties), it
// differentiates the same function written with stock, differentiable ATen ops instead, so
// double backward is exact.
#include <c10/core/TensorImpl.h>
#include <c10/util/SmallVector.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <memory>
#include <type_traits>

#include "fastgan.h"
#include "op_handles.h"

namespace fastgan {
namespace {

using op::Mask3;
using op::OptTensor;
using op::Tensor;
using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

Tensor value_or_undefined(const OptTensor& t) { return t.has_value() ? *t : Tensor(); }

// The running statistics are written in place below the autograd key; bump their versions
// as an in-place op would, so autograd can tell if a saved copy of them went stale.
void bump_versions(std::initializer_list<const OptTensor*> tensors) {
  for (const OptTensor* t : tensors)
    if (t->has_value() && (*t)->defined()) (*t)->unsafeGetTensorImpl()->bump_version();
}

// Forward-mode AD (torch.func.jvp, dual tensors) has no formula here: refuse it by name
// rather than return a primal with its tangent silently dropped.
template <class... Ts>
void refuse_forward_ad(const char* op, const Ts&... tensors) {
  const bool any = ((tensors.defined() && tensors._fw_grad(/*level=*/0).defined()) || ...);
  TORCH_CHECK_NOT_IMPLEMENTED(!any, "fastgan.", op, ": forward-mode AD (dual tensors, torch.func.jvp) is not "
                              "supported; use reverse mode (backward, torch.autograd.grad)");
}

// How torch owns a graph node is internal and has changed: through std::shared_ptr (Node
// derives from std::enable_shared_from_this) up to torch 2.11 at least, through
// c10::intrusive_ptr in 2.13 and later. Read it off the type itself rather than a version
// number, so a release in between builds whichever way it went; the nodes are the same
// either way.
constexpr bool kNodeOwnedBySharedPtr = std::is_base_of_v<std::enable_shared_from_this<Node>, Node>;
template <class NodeT>
using NodePtr = std::conditional_t<kNodeOwnedBySharedPtr, std::shared_ptr<NodeT>, c10::intrusive_ptr<NodeT>>;

// The node for an op call whose inputs (in the node's gradient order) need a gradient, or
// null when none does or grad mode is off: then no graph is recorded at all.
template <class NodeT, class... Ts>
NodePtr<NodeT> make_node(const Ts&... differentiable_inputs) {
  if (!torch::autograd::compute_requires_grad(differentiable_inputs...)) return {};
  NodePtr<NodeT> node;
  if constexpr (kNodeOwnedBySharedPtr) {
    node = std::make_shared<NodeT>();
  } else {
    node = c10::make_intrusive<NodeT>();
  }
  node->set_next_edges(torch::autograd::collect_next_edges(differentiable_inputs...));
  return node;
}

SavedVariable save(const Tensor& t) { return SavedVariable(t, /*is_output=*/false); }
SavedVariable save(const OptTensor& t) { return SavedVariable(value_or_undefined(t), /*is_output=*/false); }

// Gradients of out with respect to those inputs that require grad (undefined for the
// others), differentiable themselves.
variable_list differentiable_grads(const Tensor& out, const variable_list& inputs, const Tensor& grad_out) {
  variable_list wanted, result(inputs.size());
  std::vector<size_t> where;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && inputs[i].requires_grad()) {
      wanted.push_back(inputs[i]);
      where.push_back(i);
    }
  }
  if (wanted.empty()) return result;
  const variable_list grads = torch::autograd::grad({out}, wanted, {grad_out}, /*retain_graph=*/true,
                                                    /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t k = 0; k < where.size(); ++k) result[where[k]] = grads[k];
  return result;
}

// activation(batch_norm(x)) with stock ops: batch statistics, or the given mean/var.
Tensor batch_norm_act_stock(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                            const Tensor& var, bool batch_stats, double eps, Activation act, double slope) {
  const Tensor y = batch_stats ? at::batch_norm(x, weight, bias, {}, {}, true, 0.0, eps, false)
                               : at::batch_norm(x, weight, bias, mean, var, false, 0.0, eps, false);
  return activate_tensor(act, y, slope);
}

// A parameter's gradient in the parameter's dtype.
Tensor cast_like(const Tensor& grad, const Tensor& param) {
  if (!param.defined() || !grad.defined()) return Tensor();
  return in_dtype(grad, param.scalar_type());
}

// A convolution's non-tensor arguments, kept inline (no allocation for 2-d convolutions).
struct ConvArgs {
  using Ints = c10::SmallVector<int64_t, 2>;
  Ints stride, padding, dilation, output_padding;
  bool transposed = false;
  int64_t groups = 1;

  ConvArgs() = default;
  ConvArgs(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
           at::IntArrayRef output_padding, int64_t groups)
      : stride(stride.begin(), stride.end()),
        padding(padding.begin(), padding.end()),
        dilation(dilation.begin(), dilation.end()),
        output_padding(output_padding.begin(), output_padding.end()),
        transposed(transposed),
        groups(groups) {}

  Tensor convolution(const Tensor& input, const Tensor& weight, const Tensor& bias) const {
    return at::convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups);
  }
};

// The activation as the backward ops take it (their schema has a str; names are short
// enough for std::string's inline buffer, so keeping one allocates nothing).
struct ActArgs {
  std::string name;
  double slope = 0;
  Activation act() const { return parse_activation(name); }
};

// --- batch_norm_act -------------------------------------------------------------------------

struct BatchNormActBackward final : Node {
  SavedVariable input, weight, bias, mean, var;
  bool batch_stats = true;
  double eps = 0;
  ActArgs act{};

  std::string name() const override { return "fastgan::BatchNormActBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&input, &weight, &bias, &mean, &var}) v->reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list result(3);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return result;
    const Tensor x = input.unpack(), w = weight.unpack(), b = bias.unpack(), m = mean.unpack(), v = var.unpack();
    if (at::GradMode::is_enabled()) {
      const Tensor out = batch_norm_act_stock(x, w, b, m, v, batch_stats, eps, act.act(), act.slope);
      return differentiable_grads(out, {x, w, b}, grad_out);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [gi, gw, gb] =
        op::batch_norm_act_backward().call(grad_out, x, w, b, m, v, batch_stats, eps, act.name, act.slope);
    if (task_should_compute_output(0)) result[0] = gi;
    if (task_should_compute_output(1)) result[1] = cast_like(gw, w);
    if (task_should_compute_output(2)) result[2] = cast_like(gb, b);
    return result;
  }
};

std::tuple<Tensor, Tensor, Tensor> batch_norm_act_autograd(
    const Tensor& input, const OptTensor& weight, const OptTensor& bias, const OptTensor& running_mean,
    const OptTensor& running_var, const OptTensor& num_batches_tracked, bool training,
    c10::optional<double> momentum, double eps, c10::string_view activation, double negative_slope) {
  refuse_forward_ad("batch_norm_act", input, value_or_undefined(weight), value_or_undefined(bias));
  auto node = make_node<BatchNormActBackward>(input, weight, bias);
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::batch_norm_act().call(input, weight, bias, running_mean, running_var, num_batches_tracked, training,
                                     momentum, eps, activation, negative_slope);
  }();
  if (training) bump_versions({&running_mean, &running_var, &num_batches_tracked});
  if (node) {
    const auto& [out, mean, var] = result;
    torch::autograd::set_history(out, node);
    node->input = save(input), node->weight = save(weight), node->bias = save(bias);
    node->mean = save(mean), node->var = save(var);
    node->batch_stats = training || !running_mean.has_value() || !running_mean->defined();
    node->eps = eps;
    node->act = {std::string(activation), negative_slope};
  }
  return result;
}

// --- conv_bn_act ----------------------------------------------------------------------------

struct ConvBnActBackward final : Node {
  SavedVariable input, weight, conv_bias, conv_out, bn_weight, bn_bias, mean, var;
  ConvArgs conv;
  bool batch_stats = true;
  double eps = 0;
  ActArgs act{};

  std::string name() const override { return "fastgan::ConvBnActBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&input, &weight, &conv_bias, &conv_out, &bn_weight, &bn_bias, &mean, &var})
      v->reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(5);
    const Tensor x = input.unpack(), w = weight.unpack(), cb = conv_bias.unpack(), bw = bn_weight.unpack(),
                 bb = bn_bias.unpack(), m = mean.unpack(), v = var.unpack();
    if (at::GradMode::is_enabled()) {
      const Tensor out =
          batch_norm_act_stock(conv.convolution(x, w, cb), bw, bb, m, v, batch_stats, eps, act.act(), act.slope);
      return differentiable_grads(out, {x, w, cb, bw, bb}, grad_out);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Mask3 mask{task_should_compute_output(0), task_should_compute_output(1), task_should_compute_output(2)};
    auto [gi, gw, gb, gbw, gbb] = op::conv_bn_act_backward().call(
        grad_out, x, w, conv_out.unpack(), bw, bb, m, v, conv.stride, conv.padding, conv.dilation, conv.transposed,
        conv.output_padding, conv.groups, batch_stats, eps, act.name, act.slope, mask);
    return {gi, gw, gb, task_should_compute_output(3) ? gbw : Tensor(), task_should_compute_output(4) ? gbb : Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor> conv_bn_act_autograd(
    const Tensor& input, const Tensor& weight, const OptTensor& conv_bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
    int64_t groups, const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& running_mean,
    const OptTensor& running_var, const OptTensor& num_batches_tracked, bool training,
    c10::optional<double> momentum, double eps, c10::string_view activation, double negative_slope) {
  refuse_forward_ad("conv_bn_act", input, weight, value_or_undefined(conv_bias), value_or_undefined(bn_weight),
                    value_or_undefined(bn_bias));
  auto node = make_node<ConvBnActBackward>(input, weight, conv_bias, bn_weight, bn_bias);
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::conv_bn_act().call(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding,
                                  groups, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked,
                                  training, momentum, eps, activation, negative_slope);
  }();
  if (training) bump_versions({&running_mean, &running_var, &num_batches_tracked});
  if (node) {
    const auto& [out, conv_out, mean, var] = result;
    torch::autograd::set_history(out, node);
    node->input = save(input), node->weight = save(weight), node->conv_bias = save(conv_bias);
    node->conv_out = save(conv_out), node->bn_weight = save(bn_weight), node->bn_bias = save(bn_bias);
    node->mean = save(mean), node->var = save(var);
    node->conv = ConvArgs(stride, padding, dilation, transposed, output_padding, groups);
    node->batch_stats = training || !running_mean.has_value() || !running_mean->defined();
    node->eps = eps;
    node->act = {std::string(activation), negative_slope};
  }
  return result;
}

// --- conv_act -------------------------------------------------------------------------------

// What the backward of a layer followed by an activation reads (conv_act, linear_act): the
// layer's input, weight and bias, and the activation's output.
struct LayerActBackward : Node {
  SavedVariable input, weight, bias, output;
  ActArgs act{};

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&input, &weight, &bias, &output}) v->reset_data();
  }

  // Called once the forward has run; out gets this node as its grad_fn.
  void record(const Tensor& in, const Tensor& w, const OptTensor& b, const Tensor& out, c10::string_view activation,
              double negative_slope) {
    torch::autograd::set_history(out, getptr());
    input = save(in), weight = save(w), bias = save(b);
    output = SavedVariable(out, /*is_output=*/true);
    act = {std::string(activation), negative_slope};
  }
};

struct ConvActBackward final : LayerActBackward {
  ConvArgs conv;

  std::string name() const override { return "fastgan::ConvActBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(3);
    const Tensor x = input.unpack(), w = weight.unpack(), b = bias.unpack();
    if (at::GradMode::is_enabled()) {
      const Tensor again = activate_tensor(act.act(), conv.convolution(x, w, b), act.slope);
      return differentiable_grads(again, {x, w, b}, grad_out);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Mask3 mask{task_should_compute_output(0), task_should_compute_output(1), task_should_compute_output(2)};
    auto [gi, gw, gb] = op::conv_act_backward().call(grad_out, x, w, output.unpack(getptr()), conv.stride,
                                                     conv.padding, conv.dilation, conv.transposed,
                                                     conv.output_padding, conv.groups, act.name, act.slope, mask);
    return {gi, gw, gb};
  }
};

Tensor conv_act_autograd(const Tensor& input, const Tensor& weight, const OptTensor& bias, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                         at::IntArrayRef output_padding, int64_t groups, c10::string_view activation,
                         double negative_slope) {
  refuse_forward_ad("conv_act", input, weight, value_or_undefined(bias));
  auto node = make_node<ConvActBackward>(input, weight, bias);
  Tensor out = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::conv_act().call(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
                               activation, negative_slope);
  }();
  if (node) {
    node->record(input, weight, bias, out, activation, negative_slope);
    node->conv = ConvArgs(stride, padding, dilation, transposed, output_padding, groups);
  }
  return out;
}

// --- linear_act -----------------------------------------------------------------------------

struct LinearActBackward final : LayerActBackward {
  std::string name() const override { return "fastgan::LinearActBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(3);
    const Tensor x = input.unpack(), w = weight.unpack(), b = bias.unpack();
    if (at::GradMode::is_enabled()) {
      const Tensor again = activate_tensor(act.act(), at::linear(x, w, b), act.slope);
      return differentiable_grads(again, {x, w, b}, grad_out);
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Mask3 mask{task_should_compute_output(0), task_should_compute_output(1), task_should_compute_output(2)};
    auto [gi, gw, gb] =
        op::linear_act_backward().call(grad_out, x, w, output.unpack(getptr()), act.name, act.slope, mask);
    return {gi, gw, gb};
  }
};

Tensor linear_act_autograd(const Tensor& input, const Tensor& weight, const OptTensor& bias,
                           c10::string_view activation, double negative_slope) {
  refuse_forward_ad("linear_act", input, weight, value_or_undefined(bias));
  auto node = make_node<LinearActBackward>(input, weight, bias);
  Tensor out = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::linear_act().call(input, weight, bias, activation, negative_slope);
  }();
  if (node) node->record(input, weight, bias, out, activation, negative_slope);
  return out;
}

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
    if (at::GradMode::is_enabled()) return {grad_out * activation_grad_from_output_tensor(act.act(), out, act.slope)};
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

std::tuple<Tensor, Tensor> bce_with_logits_autograd(const Tensor& input, const OptTensor& target,
                                                    double target_value, int64_t reduction) {
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
  m.impl("batch_norm_act", &batch_norm_act_autograd);
  m.impl("conv_bn_act", &conv_bn_act_autograd);
  m.impl("conv_act", &conv_act_autograd);
  m.impl("linear_act", &linear_act_autograd);
  m.impl("activation", &activation_autograd);
  m.impl("bce_with_logits", &bce_with_logits_autograd);
  m.impl("logit_loss", &logit_loss_autograd);
}

}  // namespace fastgan
