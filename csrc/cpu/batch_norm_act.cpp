// The CPU ops of fused BatchNorm + activation: statistics, normalise+affine+activate in one
// pass, and the backward (one reduction pass, one elementwise pass). This file checks the
// arguments, allocates and folds the per-channel coefficients; the loops are in
// batch_norm_loops.h, compiled once per instruction set (for_each_isa.h), and the ops call the
// set this processor runs (FASTGAN_CPU_LOOP).
#ifndef FASTGAN_CPU_ISA  // the ops, compiled once
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../fastgan.h"
#include "../args/batch_norm_act.h"
#include "isa.h"

#define FASTGAN_CPU_LOOPS "batch_norm_act.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

// The loops' view of an input. A (N, C, 1, 1) input (BatchNorm1d's (N, C) rows, viewed so) is
// rows of C values in either layout, and the NCHW loops would walk it as N * C planes of one
// value each (BatchNorm1d + LeakyReLU at 64 x 1024 ran 4x slower than stock's pair), so the
// channels-last loops run along the rows instead.
Geometry loop_geometry(const at::Tensor& x) {
  Geometry g = geometry_of(x);
  g.channels_last = g.channels_last || g.HW == 1;
  return g;
}

// scale = weight * invstd, shift = bias - mean * scale, per channel, in the accumulation type.
template <typename acc_t, typename stat_t>
void fold_affine(const stat_t* mean, const stat_t* var, const stat_t* weight, const stat_t* bias, double eps, int64_t C,
                 acc_t* scale, acc_t* shift, acc_t* invstd) {
  for (int64_t c = 0; c < C; ++c) {
    acc_t is = acc_t(1) / std::sqrt(acc_t(var[c]) + acc_t(eps));
    acc_t w = weight ? acc_t(weight[c]) : acc_t(1);
    acc_t b = bias ? acc_t(bias[c]) : acc_t(0);
    invstd[c] = is;
    scale[c] = w * is;
    shift[c] = b - acc_t(mean[c]) * scale[c];
  }
}

void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var,
                          const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                          const at::Tensor& save_var, c10::optional<double> momentum, int64_t count);

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cpu(
    const at::Tensor& input_, const c10::optional<at::Tensor>& weight_, const c10::optional<at::Tensor>& bias_,
    const c10::optional<at::Tensor>& running_mean_, const c10::optional<at::Tensor>& running_var_,
    const c10::optional<at::Tensor>& num_batches_tracked, bool training, c10::optional<double> momentum, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const bool use_batch = check_batch_norm_act_args(input_, weight_, bias_, running_mean_, running_var_,
                                                   num_batches_tracked, training, act);
  const at::Tensor input = input_.contiguous(layout_of(input_));
  const Geometry g = loop_geometry(input);
  at::Tensor out = at::empty_like(input, input.options(), layout_of(input));
  const auto sdt = stats_dtype(input);
  at::Tensor mean, var;
  if (use_batch) {
    mean = at::empty({g.C}, input.options().dtype(sdt));
    var = at::empty({g.C}, input.options().dtype(sdt));
  } else {
    mean = running_mean_->to(sdt).clone();
    var = running_var_->to(sdt).clone();
  }
  const at::Tensor weight = as_stats(weight_, input), bias = as_stats(bias_, input);
  if (input.numel() == 0) return {out, mean, var};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_act_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    using stat_t = acc_t;
    if (use_batch)
      FASTGAN_CPU_LOOP(stats_entry)(input.scalar_type(), input.const_data_ptr(), g, mean.data_ptr(), var.data_ptr());
    std::vector<acc_t> scale(g.C), shift(g.C), invstd(g.C);
    fold_affine(mean.const_data_ptr<stat_t>(), var.const_data_ptr<stat_t>(),
                weight.defined() ? weight.const_data_ptr<stat_t>() : nullptr,
                bias.defined() ? bias.const_data_ptr<stat_t>() : nullptr, eps, g.C, scale.data(), shift.data(),
                invstd.data());
    FASTGAN_CPU_LOOP(apply_entry)(input.scalar_type(), act, input.const_data_ptr(), out.data_ptr(), g, scale.data(),
                                  shift.data(), negative_slope);
  });
  if (training && running_mean_.has_value() && running_mean_->defined()) {
    at::Tensor running_mean = *running_mean_, running_var = *running_var_;
    update_running_stats(running_mean, running_var, num_batches_tracked, mean, var, momentum, g.count());
  }
  return {out, mean, var};
}

// The inputs of the backward kernels, made once per call: the tensors in the walked layout
// and the per-channel coefficients in the accumulation type.
template <typename scalar_t>
struct BackwardPlan {
  using acc_t = acc_type<scalar_t>;
  std::vector<acc_t> scale, shift, invstd, mean;

  BackwardPlan(const at::Tensor& mean_t, const at::Tensor& var_t, const at::Tensor& weight, const at::Tensor& bias,
               double eps, int64_t C)
      : scale(C), shift(C), invstd(C), mean(C) {
    const acc_t* m = mean_t.const_data_ptr<acc_t>();
    fold_affine(m, var_t.const_data_ptr<acc_t>(), weight.defined() ? weight.const_data_ptr<acc_t>() : nullptr,
                bias.defined() ? bias.const_data_ptr<acc_t>() : nullptr, eps, C, scale.data(), shift.data(),
                invstd.data());
    for (int64_t c = 0; c < C; ++c) mean[c] = m[c];
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cpu(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& save_mean_, const at::Tensor& save_var_, bool training,
    double eps, c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, save_mean_, save_var_);
  const Geometry g = loop_geometry(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  at::Tensor grad_weight = at::zeros({g.C}, b.input.options().dtype(sdt));
  at::Tensor grad_bias = at::zeros({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {grad_input, grad_weight, grad_bias};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    using stat_t = acc_t;
    const BackwardPlan<scalar_t> plan(b.mean, b.var, b.weight, b.bias, eps, g.C);
    std::vector<acc_t> k_mean_g(g.C, 0), k_x(g.C, 0);
    std::vector<double> sum_g(g.C), sum_gx(g.C);
    FASTGAN_CPU_LOOP(backward_sums_entry)(b.input.scalar_type(), act, b.grad_out.const_data_ptr(),
                                          b.input.const_data_ptr(), g, plan.scale.data(), plan.shift.data(),
                                          plan.mean.data(), negative_slope, sum_g.data(), sum_gx.data());
    const double n = double(g.count());
    stat_t* gw = grad_weight.data_ptr<stat_t>();
    stat_t* gb = grad_bias.data_ptr<stat_t>();
    for (int64_t c = 0; c < g.C; ++c) {
      gb[c] = stat_t(sum_g[c]);
      gw[c] = stat_t(sum_gx[c] * double(plan.invstd[c]));
      if (training) {
        k_mean_g[c] = acc_t(sum_g[c] / n);
        k_x[c] = acc_t(sum_gx[c] / n * double(plan.invstd[c]) * double(plan.invstd[c]));
      }
    }
    FASTGAN_CPU_LOOP(backward_input_entry)(
        b.input.scalar_type(), act, b.grad_out.const_data_ptr(), b.input.const_data_ptr(), grad_input.data_ptr(), g,
        plan.scale.data(), plan.shift.data(), plan.mean.data(), k_mean_g.data(), k_x.data(), negative_slope);
  });
  return {grad_input, grad_weight, grad_bias};
}

// --- The backward split in two, for synchronised BatchNorm: the caller all-reduces the two
// per-channel sums between the reduction and the elementwise pass. -------------------------

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cpu(const at::Tensor& input_) {
  check_bn_input(input_);
  const at::Tensor input = input_.contiguous(layout_of(input_));
  const Geometry g = loop_geometry(input);
  const auto sdt = stats_dtype(input);
  at::Tensor mean = at::zeros({g.C}, input.options().dtype(sdt));
  at::Tensor var = at::zeros({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) return {mean, var};  // a rank with no samples adds count 0
  FASTGAN_CPU_LOOP(stats_entry)(input.scalar_type(), input.const_data_ptr(), g, mean.data_ptr(), var.data_ptr());
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce_cpu(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_, const at::Tensor& var_, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = loop_geometry(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor sum_dy = at::zeros({g.C}, b.input.options().dtype(sdt));
  at::Tensor sum_dy_xmu = at::zeros({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {sum_dy, sum_dy_xmu};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_reduce_cpu", [&] {
        using acc_t = acc_type<scalar_t>;
        const BackwardPlan<scalar_t> plan(b.mean, b.var, b.weight, b.bias, eps, g.C);
        std::vector<double> sum_g(g.C), sum_gx(g.C);
        FASTGAN_CPU_LOOP(backward_sums_entry)(b.input.scalar_type(), act, b.grad_out.const_data_ptr(),
                                              b.input.const_data_ptr(), g, plan.scale.data(), plan.shift.data(),
                                              plan.mean.data(), negative_slope, sum_g.data(), sum_gx.data());
        acc_t* sd = sum_dy.data_ptr<acc_t>();
        acc_t* sdx = sum_dy_xmu.data_ptr<acc_t>();
        for (int64_t c = 0; c < g.C; ++c) {
          sd[c] = acc_t(sum_g[c]);
          sdx[c] = acc_t(sum_gx[c]);
        }
      });
  return {sum_dy, sum_dy_xmu};
}

at::Tensor batch_norm_act_backward_elemt_cpu(const at::Tensor& grad_out_, const at::Tensor& input_,
                                             const c10::optional<at::Tensor>& weight_,
                                             const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_,
                                             const at::Tensor& var_, const at::Tensor& mean_dy_,
                                             const at::Tensor& mean_dy_xmu_, double eps, c10::string_view activation,
                                             double negative_slope) {
  const Activation act = parse_activation(activation);
  check_backward_elemt_sums(input_, mean_dy_, mean_dy_xmu_);
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = loop_geometry(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  if (b.input.numel() == 0) return grad_input;
  const at::Tensor mean_dy = as_stats(mean_dy_, b.input), mean_dy_xmu = as_stats(mean_dy_xmu_, b.input);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_elemt_cpu", [&] {
        using acc_t = acc_type<scalar_t>;
        const BackwardPlan<scalar_t> plan(b.mean, b.var, b.weight, b.bias, eps, g.C);
        std::vector<acc_t> k_mean_g(g.C), k_x(g.C);
        for (int64_t c = 0; c < g.C; ++c) {
          k_mean_g[c] = mean_dy.const_data_ptr<acc_t>()[c];
          k_x[c] = mean_dy_xmu.const_data_ptr<acc_t>()[c] * plan.invstd[c] * plan.invstd[c];
        }
        FASTGAN_CPU_LOOP(backward_input_entry)(
            b.input.scalar_type(), act, b.grad_out.const_data_ptr(), b.input.const_data_ptr(), grad_input.data_ptr(), g,
            plan.scale.data(), plan.shift.data(), plan.mean.data(), k_mean_g.data(), k_x.data(), negative_slope);
      });
  return grad_input;
}

// nn.BatchNorm2d's update: the factor is momentum, or the cumulative average 1 / count of
// batches when momentum is None, or 0 when there is no counter either (what
// nn.BatchNorm2d.forward does then). Blended in double from the float batch statistics,
// as the CUDA kernel does, then rounded once to the buffers' dtype. Raw pointers and strides
// throughout: on small layers a dispatched op here (add_, item, to, copy_) costs more than
// the arithmetic.
void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var,
                          const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                          const at::Tensor& save_var, c10::optional<double> momentum, int64_t count) {
  double factor = momentum.value_or(0.0);
  if (num_batches_tracked.has_value() && num_batches_tracked->defined()) {
    int64_t* counter = num_batches_tracked->data_ptr<int64_t>();
    *counter += 1;
    if (!momentum.has_value()) factor = 1.0 / double(*counter);
  }
  const double unbias = double(count) / double(count - 1);
  const int64_t C = running_mean.numel();
  const int64_t sm = running_mean.stride(0), sv = running_var.stride(0);
  const at::Tensor batch_var =
      save_var.scalar_type() == save_mean.scalar_type() ? save_var : save_var.to(save_mean.scalar_type());
  const int64_t qsm = save_mean.stride(0), qsv = batch_var.stride(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "update_running_stats", [&] {
    using running_t = scalar_t;
    running_t* pm = running_mean.data_ptr<running_t>();
    running_t* pv = running_var.data_ptr<running_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, save_mean.scalar_type(), "update_running_stats_batch", [&] {
          const scalar_t* qm = save_mean.const_data_ptr<scalar_t>();
          const scalar_t* qv = batch_var.const_data_ptr<scalar_t>();
          for (int64_t c = 0; c < C; ++c) {
            pm[c * sm] = running_t((1.0 - factor) * double(pm[c * sm]) + factor * double(qm[c * qsm]));
            pv[c * sv] = running_t((1.0 - factor) * double(pv[c * sv]) + factor * double(qv[c * qsv]) * unbias);
          }
        });
  });
}

void batch_norm_update_stats_cpu(at::Tensor& running_mean, at::Tensor& running_var,
                                 const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                                 const at::Tensor& save_var, c10::optional<double> momentum, int64_t count) {
  check_update_stats_args(running_mean, running_var, num_batches_tracked, save_mean, save_var, count);
  update_running_stats(running_mean, running_var, num_batches_tracked, save_mean, save_var, momentum, count);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("batch_norm_act", &batch_norm_act_cpu);
  m.impl("batch_norm_act_backward", &batch_norm_act_backward_cpu);
  m.impl("batch_norm_update_stats", &batch_norm_update_stats_cpu);
  m.impl("batch_norm_stats", &batch_norm_stats_cpu);
  m.impl("batch_norm_act_backward_reduce", &batch_norm_act_backward_reduce_cpu);
  m.impl("batch_norm_act_backward_elemt", &batch_norm_act_backward_elemt_cpu);
}

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)
#include "batch_norm_loops.h"
#endif  // FASTGAN_CPU_ISA
