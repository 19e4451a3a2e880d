// Autograd for every differentiable fastgan op, in C++ (the layers here; activation and the
// losses in autograd_elementwise.cpp; what they share in autograd_support.h): each op's Autograd kernel records one
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
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include "autograd_support.h"

namespace fastgan {
namespace {

using namespace autograd_support;  // NOLINT: the nodes' shared vocabulary

// activation(batch_norm(x)) with stock ops: batch statistics, or the given mean/var.
Tensor batch_norm_act_stock(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                            const Tensor& var, bool batch_stats, double eps, Activation act, double slope) {
  const Tensor y = batch_stats ? at::batch_norm(x, weight, bias, {}, {}, true, 0.0, eps, false)
                               : at::batch_norm(x, weight, bias, mean, var, false, 0.0, eps, false);
  return activate_tensor(act, y, slope);
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

std::tuple<Tensor, Tensor, Tensor> batch_norm_act_autograd(const Tensor& input, const OptTensor& weight,
                                                           const OptTensor& bias, const OptTensor& running_mean,
                                                           const OptTensor& running_var,
                                                           const OptTensor& num_batches_tracked, bool training,
                                                           c10::optional<double> momentum, double eps,
                                                           c10::string_view activation, double negative_slope) {
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
    at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
    const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& running_mean, const OptTensor& running_var,
    const OptTensor& num_batches_tracked, bool training, c10::optional<double> momentum, double eps,
    c10::string_view activation, double negative_slope) {
  refuse_forward_ad("conv_bn_act", input, weight, value_or_undefined(conv_bias), value_or_undefined(bn_weight),
                    value_or_undefined(bn_bias));
  auto node = make_node<ConvBnActBackward>(input, weight, conv_bias, bn_weight, bn_bias);
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::conv_bn_act().call(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding,
                                  groups, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training,
                                  momentum, eps, activation, negative_slope);
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
// activation's output (its derivative is a function of it), and the layer's input and weight
// where a gradient needs them. The bias is never read: it reaches the gradients only through the
// output, as in torch's own nodes, so changing it in place after the forward is harmless.
struct LayerActBackward : Node {
  SavedVariable input, weight, output;
  ActArgs act{};

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&input, &weight, &output}) v->reset_data();
  }

  // Called once the forward has run; out gets this node as its grad_fn. keep_input /
  // keep_weight: whether a gradient will read them.
  void record(const Tensor& in, const Tensor& w, bool keep_input, bool keep_weight, const Tensor& out,
              c10::string_view activation, double negative_slope) {
    torch::autograd::set_history(out, getptr());
    if (keep_input) input = save(in);
    if (keep_weight) weight = save(w);
    output = SavedVariable(out, /*is_output=*/true);
    act = {std::string(activation), negative_slope};
  }

  // The gradient at the activation's input, differentiable (create_graph): from the output, as
  // the fused kernels compute it, so second order flows through the output back to this node.
  Tensor grad_before_activation(const Tensor& grad_out) {
    return activation_backward_tensor(act.act(), grad_out, output.unpack(getptr()), act.slope);
  }

  Mask3 mask() const {
    return {task_should_compute_output(0), task_should_compute_output(1), task_should_compute_output(2)};
  }
};

struct ConvActBackward final : LayerActBackward {
  ConvArgs conv;

  std::string name() const override { return "fastgan::ConvActBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(3);
    const Tensor x = input.unpack(), w = weight.unpack();
    const Mask3 wanted = mask();
    if (at::GradMode::is_enabled()) {  // torch's convolution_backward, which is differentiable again
      const Tensor g = grad_before_activation(grad_out);
      const std::vector<int64_t> bias_sizes{g.size(1)};
      auto [gi, gw, gb] = at::convolution_backward(
          g, x, w, wanted[2] ? at::OptionalIntArrayRef(bias_sizes) : at::OptionalIntArrayRef(), conv.stride,
          conv.padding, conv.dilation, conv.transposed, conv.output_padding, conv.groups, wanted);
      return {gi, gw, gb};
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [gi, gw, gb] =
        op::conv_act_backward().call(grad_out, x, w, output.unpack(getptr()), conv.stride, conv.padding, conv.dilation,
                                     conv.transposed, conv.output_padding, conv.groups, act.name, act.slope, wanted);
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
  if (node) {  // a convolution's gradients read both its input and its weight (their shapes at least)
    node->record(input, weight, /*keep_input=*/true, /*keep_weight=*/true, out, activation, negative_slope);
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
    // Undefined where no gradient reads them: the input without the weight's gradient, the
    // weight without the input's.
    const Tensor x = input.unpack(), w = weight.unpack();
    const Mask3 wanted = mask();
    if (at::GradMode::is_enabled()) {
      const Tensor g = grad_before_activation(grad_out);
      const Tensor rows = g.reshape({-1, g.size(-1)});
      return {wanted[0] ? at::matmul(g, w) : Tensor(),
              wanted[1] ? at::mm(rows.t(), x.reshape({-1, x.size(-1)})) : Tensor(), wanted[2] ? rows.sum(0) : Tensor()};
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [gi, gw, gb] =
        op::linear_act_backward().call(grad_out, x, w, output.unpack(getptr()), act.name, act.slope, wanted);
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
  // As torch's matrix product: the input only for the weight's gradient, the weight only for the
  // input's, so either may change in place after the forward when the other needs no gradient.
  if (node)
    node->record(input, weight, /*keep_input=*/weight.requires_grad(), /*keep_weight=*/input.requires_grad(), out,
                 activation, negative_slope);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("batch_norm_act", &batch_norm_act_autograd);
  m.impl("conv_bn_act", &conv_bn_act_autograd);
  m.impl("conv_act", &conv_act_autograd);
  m.impl("linear_act", &linear_act_autograd);
}

}  // namespace fastgan
