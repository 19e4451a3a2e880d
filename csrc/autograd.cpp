// Autograd for every differentiable fastgan op, in C++: each op's Autograd kernel is a
// torch::autograd::Function, so an eager call never enters Python and records one graph node.
//
// The backward runs the op's registered backward op. When a second derivative is asked for
// (backward with create_graph=True: gradient penalties), it differentiates the same function
// written with stock, differentiable ATen ops instead, so double backward is exact.
#include <c10/core/TensorImpl.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "fastgan.h"
#include "op_handles.h"

namespace fastgan {
namespace {

using op::Mask3;
using op::OptTensor;
using op::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tensor value_or_undefined(const OptTensor& t) { return t.has_value() ? *t : Tensor(); }

bool requires_grad(const OptTensor& t) { return t.has_value() && t->defined() && t->requires_grad(); }

// The running statistics are written in place below the autograd key; bump their versions
// as an in-place op would, so autograd can tell if a saved copy of them went stale.
void bump_versions(std::initializer_list<const OptTensor*> tensors) {
  for (const OptTensor* t : tensors)
    if (t->has_value() && (*t)->defined()) (*t)->unsafeGetTensorImpl()->bump_version();
}

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

std::vector<int64_t> ints(const c10::IValue& v) { return v.toIntVector(); }

// --- batch_norm_act -------------------------------------------------------------------------

struct BatchNormActFunction : torch::autograd::Function<BatchNormActFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const OptTensor& weight,
                               const OptTensor& bias, const OptTensor& running_mean, const OptTensor& running_var,
                               const OptTensor& num_batches_tracked, bool training, c10::optional<double> momentum,
                               double eps, c10::string_view activation, double negative_slope) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, mean, var] = op::batch_norm_act().call(input, weight, bias, running_mean, running_var,
                                                      num_batches_tracked, training, momentum, eps, activation,
                                                      negative_slope);
    const bool batch_stats = training || !running_mean.has_value() || !running_mean->defined();
    if (training) bump_versions({&running_mean, &running_var, &num_batches_tracked});
    ctx->save_for_backward({input, value_or_undefined(weight), value_or_undefined(bias), mean, var});
    ctx->saved_data["batch_stats"] = batch_stats;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["slope"] = negative_slope;
    ctx->mark_non_differentiable({mean, var});
    ctx->set_materialize_grads(false);  // no zeros made for the outputs nobody differentiates
    return {out, mean, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(11);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return result;
    const auto saved = ctx->get_saved_variables();
    const Tensor &input = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3], &var = saved[4];
    const bool batch_stats = ctx->saved_data["batch_stats"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble(), slope = ctx->saved_data["slope"].toDouble();
    const std::string activation = ctx->saved_data["activation"].toStringRef();
    if (at::GradMode::is_enabled()) {
      const Tensor out = batch_norm_act_stock(input, weight, bias, mean, var, batch_stats, eps,
                                              parse_activation(activation), slope);
      const variable_list g = differentiable_grads(out, {input, weight, bias}, grad_out);
      result[0] = g[0], result[1] = g[1], result[2] = g[2];
      return result;
    }
    auto [gi, gw, gb] = op::batch_norm_act_backward().call(grad_out, input, weight, bias, mean, var, batch_stats,
                                                           eps, activation, slope);
    result[0] = gi;
    if (weight.defined()) result[1] = gw.to(weight.scalar_type());
    if (bias.defined()) result[2] = gb.to(bias.scalar_type());
    return result;
  }
};

// --- conv_bn_act ----------------------------------------------------------------------------

struct ConvBnActFunction : torch::autograd::Function<ConvBnActFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& weight,
                               const OptTensor& conv_bias, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
                               int64_t groups, const OptTensor& bn_weight, const OptTensor& bn_bias,
                               const OptTensor& running_mean, const OptTensor& running_var,
                               const OptTensor& num_batches_tracked, bool training, c10::optional<double> momentum,
                               double eps, c10::string_view activation, double negative_slope) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, conv_out, mean, var] = op::conv_bn_act().call(
        input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups, bn_weight, bn_bias,
        running_mean, running_var, num_batches_tracked, training, momentum, eps, activation, negative_slope);
    if (training) bump_versions({&running_mean, &running_var, &num_batches_tracked});
    ctx->save_for_backward({input, weight, value_or_undefined(conv_bias), conv_out, value_or_undefined(bn_weight),
                            value_or_undefined(bn_bias), mean, var});
    auto& d = ctx->saved_data;
    d["stride"] = stride.vec(), d["padding"] = padding.vec(), d["dilation"] = dilation.vec();
    d["transposed"] = transposed, d["output_padding"] = output_padding.vec(), d["groups"] = groups;
    d["batch_stats"] = training || !running_mean.has_value() || !running_mean->defined();
    d["eps"] = eps, d["activation"] = std::string(activation), d["slope"] = negative_slope;
    d["mask"] = std::vector<bool>{input.requires_grad(), weight.requires_grad(), requires_grad(conv_bias)};
    ctx->mark_non_differentiable({conv_out, mean, var});
    ctx->set_materialize_grads(false);  // no zeros made for the outputs nobody differentiates
    return {out, conv_out, mean, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(19);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return result;
    const auto s = ctx->get_saved_variables();
    const Tensor &input = s[0], &weight = s[1], &conv_bias = s[2], &conv_out = s[3], &bn_weight = s[4],
                 &bn_bias = s[5], &mean = s[6], &var = s[7];
    auto& d = ctx->saved_data;
    const auto stride = ints(d["stride"]), padding = ints(d["padding"]), dilation = ints(d["dilation"]);
    const auto output_padding = ints(d["output_padding"]);
    const bool transposed = d["transposed"].toBool(), batch_stats = d["batch_stats"].toBool();
    const int64_t groups = d["groups"].toInt();
    const double eps = d["eps"].toDouble(), slope = d["slope"].toDouble();
    const std::string activation = d["activation"].toStringRef();
    if (at::GradMode::is_enabled()) {
      const Tensor y = at::convolution(input, weight, conv_bias, stride, padding, dilation, transposed,
                                       output_padding, groups);
      const Tensor out = batch_norm_act_stock(y, bn_weight, bn_bias, mean, var, batch_stats, eps,
                                              parse_activation(activation), slope);
      const variable_list g = differentiable_grads(out, {input, weight, conv_bias, bn_weight, bn_bias}, grad_out);
      result[0] = g[0], result[1] = g[1], result[2] = g[2], result[9] = g[3], result[10] = g[4];
      return result;
    }
    const auto mask = d["mask"].toBoolList();
    auto [gi, gw, gb, gbw, gbb] = op::conv_bn_act_backward().call(
        grad_out, input, weight, conv_out, bn_weight, bn_bias, mean, var, stride, padding, dilation, transposed,
        output_padding, groups, batch_stats, eps, activation, slope, Mask3{mask[0], mask[1], mask[2]});
    result[0] = gi, result[1] = gw, result[2] = gb, result[9] = gbw, result[10] = gbb;
    return result;
  }
};

// --- conv_act -------------------------------------------------------------------------------

struct ConvActFunction : torch::autograd::Function<ConvActFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& weight, const OptTensor& bias,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               bool transposed, at::IntArrayRef output_padding, int64_t groups,
                               c10::string_view activation, double negative_slope) {
    at::AutoDispatchBelowADInplaceOrView guard;
    Tensor out = op::conv_act().call(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                                     groups, activation, negative_slope);
    ctx->save_for_backward({input, weight, value_or_undefined(bias), out});
    auto& d = ctx->saved_data;
    d["stride"] = stride.vec(), d["padding"] = padding.vec(), d["dilation"] = dilation.vec();
    d["transposed"] = transposed, d["output_padding"] = output_padding.vec(), d["groups"] = groups;
    d["activation"] = std::string(activation), d["slope"] = negative_slope;
    d["mask"] = std::vector<bool>{input.requires_grad(), weight.requires_grad(), requires_grad(bias)};
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(11);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return result;
    const auto s = ctx->get_saved_variables();
    const Tensor &input = s[0], &weight = s[1], &bias = s[2], &out = s[3];
    auto& d = ctx->saved_data;
    const auto stride = ints(d["stride"]), padding = ints(d["padding"]), dilation = ints(d["dilation"]);
    const auto output_padding = ints(d["output_padding"]);
    const bool transposed = d["transposed"].toBool();
    const int64_t groups = d["groups"].toInt();
    const double slope = d["slope"].toDouble();
    const std::string activation = d["activation"].toStringRef();
    if (at::GradMode::is_enabled()) {
      const Tensor y = at::convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                                       groups);
      const Tensor again = activate_tensor(parse_activation(activation), y, slope);
      const variable_list g = differentiable_grads(again, {input, weight, bias}, grad_out);
      result[0] = g[0], result[1] = g[1], result[2] = g[2];
      return result;
    }
    const auto mask = d["mask"].toBoolList();
    auto [gi, gw, gb] = op::conv_act_backward().call(grad_out, input, weight, out, stride, padding, dilation,
                                                     transposed, output_padding, groups, activation, slope,
                                                     Mask3{mask[0], mask[1], mask[2]});
    result[0] = gi, result[1] = gw, result[2] = gb;
    return result;
  }
};

// --- activation -----------------------------------------------------------------------------

struct ActivationFunction : torch::autograd::Function<ActivationFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, c10::string_view activation,
                               double negative_slope) {
    at::AutoDispatchBelowADInplaceOrView guard;
    Tensor out = op::activation().call(input, activation, negative_slope);
    ctx->save_for_backward({out});
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["slope"] = negative_slope;
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return {Tensor(), Tensor(), Tensor()};
    const Tensor out = ctx->get_saved_variables()[0];
    const std::string activation = ctx->saved_data["activation"].toStringRef();
    const double slope = ctx->saved_data["slope"].toDouble();
    // With create_graph the derivative is written in stock ops of the output, which is
    // itself differentiable (through this node again).
    const Tensor grad_in = at::GradMode::is_enabled()
                               ? grad_out * activation_grad_from_output_tensor(parse_activation(activation), out, slope)
                               : op::activation_backward().call(grad_out, out, activation, slope);
    return {grad_in, Tensor(), Tensor()};
  }
};

// --- bce_with_logits ------------------------------------------------------------------------

struct BceWithLogitsFunction : torch::autograd::Function<BceWithLogitsFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const OptTensor& target,
                               double target_value, int64_t reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, grad] = op::bce_with_logits().call(input, target, target_value, reduction);
    ctx->save_for_backward({input, value_or_undefined(target), grad});
    ctx->saved_data["target_value"] = target_value;
    ctx->saved_data["reduction"] = reduction;
    ctx->mark_non_differentiable({grad});
    ctx->set_materialize_grads(false);  // no zeros made for the outputs nobody differentiates
    return {loss, grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(4);
    const Tensor& grad_loss = grads[0];
    if (!grad_loss.defined()) return result;
    const auto s = ctx->get_saved_variables();
    const Tensor &input = s[0], &target = s[1], &grad = s[2];
    // The mean's 1/n, with n symbolic when torch.compile traces dynamic shapes.
    const bool mean = ctx->saved_data["reduction"].toInt() == int64_t(Reduction::Mean);
    const auto per_element = [&] { return mean ? grad_loss / c10::Scalar(input.sym_numel()) : grad_loss; };
    if (input.requires_grad()) {
      if (at::GradMode::is_enabled()) {
        const Tensor sig = at::sigmoid(input);
        const Tensor diff = target.defined() ? sig - target : sig - ctx->saved_data["target_value"].toDouble();
        result[0] = diff * per_element();
      } else {
        result[0] = grad * grad_loss;  // the stored gradient, scaled: one elementwise op
      }
    }
    if (target.defined() && target.requires_grad()) result[1] = -input * per_element();
    return result;
  }
};

// --- The Autograd kernels -------------------------------------------------------------------
// With nothing to differentiate (no_grad, inference, frozen inputs) they call the op below the
// autograd key straight away, as torch's generated autograd kernels do: no node, no context.

bool any_requires_grad(std::initializer_list<const Tensor*> tensors, std::initializer_list<const OptTensor*> optional) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor* t : tensors)
    if (t->requires_grad()) return true;
  for (const OptTensor* t : optional)
    if (requires_grad(*t)) return true;
  return false;
}

std::tuple<Tensor, Tensor, Tensor> batch_norm_act_autograd(
    const Tensor& input, const OptTensor& weight, const OptTensor& bias, const OptTensor& running_mean,
    const OptTensor& running_var, const OptTensor& num_batches_tracked, bool training,
    c10::optional<double> momentum, double eps, c10::string_view activation, double negative_slope) {
  if (!any_requires_grad({&input}, {&weight, &bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = op::batch_norm_act().call(input, weight, bias, running_mean, running_var, num_batches_tracked, training,
                                       momentum, eps, activation, negative_slope);
    if (training) bump_versions({&running_mean, &running_var, &num_batches_tracked});
    return r;
  }
  auto r = BatchNormActFunction::apply(input, weight, bias, running_mean, running_var, num_batches_tracked, training,
                                       momentum, eps, activation, negative_slope);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> conv_bn_act_autograd(
    const Tensor& input, const Tensor& weight, const OptTensor& conv_bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
    int64_t groups, const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& running_mean,
    const OptTensor& running_var, const OptTensor& num_batches_tracked, bool training,
    c10::optional<double> momentum, double eps, c10::string_view activation, double negative_slope) {
  if (!any_requires_grad({&input, &weight}, {&conv_bias, &bn_weight, &bn_bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = op::conv_bn_act().call(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding,
                                    groups, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked,
                                    training, momentum, eps, activation, negative_slope);
    if (training) bump_versions({&running_mean, &running_var, &num_batches_tracked});
    return r;
  }
  auto r = ConvBnActFunction::apply(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding,
                                    groups, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked,
                                    training, momentum, eps, activation, negative_slope);
  return {r[0], r[1], r[2], r[3]};
}

Tensor conv_act_autograd(const Tensor& input, const Tensor& weight, const OptTensor& bias, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                         at::IntArrayRef output_padding, int64_t groups, c10::string_view activation,
                         double negative_slope) {
  if (!any_requires_grad({&input, &weight}, {&bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return op::conv_act().call(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
                               activation, negative_slope);
  }
  return ConvActFunction::apply(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
                                activation, negative_slope)[0];
}

Tensor activation_autograd(const Tensor& input, c10::string_view activation, double negative_slope) {
  if (!any_requires_grad({&input}, {})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return op::activation().call(input, activation, negative_slope);
  }
  return ActivationFunction::apply(input, activation, negative_slope)[0];
}

std::tuple<Tensor, Tensor> bce_with_logits_autograd(const Tensor& input, const OptTensor& target,
                                                    double target_value, int64_t reduction) {
  if (!any_requires_grad({&input}, {&target})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return op::bce_with_logits().call(input, target, target_value, reduction);
  }
  auto r = BceWithLogitsFunction::apply(input, target, target_value, reduction);
  return {r[0], r[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("batch_norm_act", &batch_norm_act_autograd);
  m.impl("conv_bn_act", &conv_bn_act_autograd);
  m.impl("conv_act", &conv_act_autograd);
  m.impl("activation", &activation_autograd);
  m.impl("bce_with_logits", &bce_with_logits_autograd);
}

}  // namespace fastgan
