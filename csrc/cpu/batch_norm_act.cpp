// CPU kernels for fused BatchNorm + activation: statistics, normalise+affine+activate in one
// pass, and the backward (one reduction pass, one elementwise pass). Loops are plain C++
// the compiler vectorises (-fopenmp-simd); channels are spread over threads with
// at::parallel_for. Every per-channel result is computed by one thread in a fixed order,
// so results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../fastgan.h"

namespace fastgan {
namespace {

// Runs short enough to stay in L1/L2, so the two-pass statistics inside one run cost one
// read from memory. Fixed, so chunking never depends on the thread count.
constexpr int64_t kRun = 4096;

// Below this many elements per task, waking another thread costs more than it saves.
constexpr int64_t kMinTask = 32768;

inline int64_t grain(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinTask / std::max<int64_t>(1, elements_per_item));
}

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;

// Chan et al.'s merge of (count, mean, M2) partials, in double.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void merge(double nb, double mb, double m2b) {
    if (nb == 0) return;
    double nn = n + nb, d = mb - mean;
    mean += d * (nb / nn);
    m2 += m2b + d * d * (n * nb / nn);
    n = nn;
  }
};

// Two-pass mean and M2 of one strided run: accurate for large means (1e3 +- 1) because
// the second pass subtracts the run's own mean before squaring.
template <typename scalar_t>
void run_moments(const scalar_t* p, int64_t len, int64_t stride, Moments& into) {
  using acc_t = acc_type<scalar_t>;
  acc_t s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < len; ++i) s += acc_t(p[i * stride]);
  acc_t mean = s / acc_t(len);
  acc_t q = 0;
#pragma omp simd reduction(+ : q)
  for (int64_t i = 0; i < len; ++i) {
    acc_t d = acc_t(p[i * stride]) - mean;
    q += d * d;
  }
  into.merge(double(len), double(mean), double(q));
}

struct Geometry {
  int64_t N, C, HW;
  bool channels_last;
  int64_t count() const { return N * HW; }
};

Geometry geometry_of(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3),
          layout_of(x) == at::MemoryFormat::ChannelsLast};
}

// Per-channel (mean, biased var) into mean_out/var_out (stats dtype).
template <typename scalar_t, typename stat_t>
void compute_stats(const scalar_t* x, const Geometry& g, stat_t* mean_out, stat_t* var_out) {
  if (!g.channels_last) {
    at::parallel_for(0, g.C, grain(g.count()), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        Moments m;
        for (int64_t n = 0; n < g.N; ++n) {
          const scalar_t* plane = x + (n * g.C + c) * g.HW;
          for (int64_t s = 0; s < g.HW; s += kRun) run_moments(plane + s, std::min(kRun, g.HW - s), 1, m);
        }
        mean_out[c] = stat_t(m.mean);
        var_out[c] = stat_t(m.m2 / m.n);
      }
    });
    return;
  }
  // NHWC: rows of C contiguous channels. Each thread owns a channel range and walks all
  // rows in fixed blocks, accumulating across channels so the inner loop is contiguous.
  using acc_t = acc_type<scalar_t>;
  const int64_t rows = g.count();
  const int64_t block = std::max<int64_t>(1, kRun * 4 / std::max<int64_t>(g.C, 1));
  at::parallel_for(0, g.C, std::max<int64_t>(16, grain(rows)), [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<Moments> m(width);
    std::vector<acc_t> s(width), q(width);
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t len = std::min(block, rows - r0);
      std::fill(s.begin(), s.end(), acc_t(0));
      std::fill(q.begin(), q.end(), acc_t(0));
      for (int64_t r = r0; r < r0 + len; ++r) {
        const scalar_t* row = x + r * g.C + c0;
        acc_t* sp = s.data();
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) sp[c] += acc_t(row[c]);
      }
      for (int64_t c = 0; c < width; ++c) s[c] /= acc_t(len);
      for (int64_t r = r0; r < r0 + len; ++r) {
        const scalar_t* row = x + r * g.C + c0;
        acc_t* sp = s.data();
        acc_t* qp = q.data();
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          acc_t d = acc_t(row[c]) - sp[c];
          qp[c] += d * d;
        }
      }
      for (int64_t c = 0; c < width; ++c) m[c].merge(double(len), double(s[c]), double(q[c]));
    }
    for (int64_t c = 0; c < width; ++c) {
      mean_out[c0 + c] = stat_t(m[c].mean);
      var_out[c0 + c] = stat_t(m[c].m2 / m[c].n);
    }
  });
}

// scale = weight * invstd, shift = bias - mean * scale, per channel, in the accumulation type.
template <typename acc_t, typename stat_t>
void fold_affine(const stat_t* mean, const stat_t* var, const stat_t* weight, const stat_t* bias,
                 double eps, int64_t C, acc_t* scale, acc_t* shift, acc_t* invstd) {
  for (int64_t c = 0; c < C; ++c) {
    acc_t is = acc_t(1) / std::sqrt(acc_t(var[c]) + acc_t(eps));
    acc_t w = weight ? acc_t(weight[c]) : acc_t(1);
    acc_t b = bias ? acc_t(bias[c]) : acc_t(0);
    invstd[c] = is;
    scale[c] = w * is;
    shift[c] = b - acc_t(mean[c]) * scale[c];
  }
}

template <Activation ACT, typename scalar_t, typename acc_t>
void apply(const scalar_t* x, scalar_t* y, const Geometry& g, const acc_t* scale,
           const acc_t* shift, acc_t slope) {
  if (!g.channels_last) {
    at::parallel_for(0, g.N * g.C, grain(g.HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p % g.C;
        const acc_t s = scale[c], b = shift[c];
        const scalar_t* xp = x + p * g.HW;
        scalar_t* yp = y + p * g.HW;
#pragma omp simd
        for (int64_t i = 0; i < g.HW; ++i) yp[i] = scalar_t(activate_t<ACT>(affine(acc_t(xp[i]), s, b), slope));
      }
    });
    return;
  }
  at::parallel_for(0, g.count(), grain(g.C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* xp = x + r * g.C;
      scalar_t* yp = y + r * g.C;
#pragma omp simd
      for (int64_t c = 0; c < g.C; ++c) yp[c] = scalar_t(activate_t<ACT>(affine(acc_t(xp[c]), scale[c], shift[c]), slope));
    }
  });
}

void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var,
                          const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                          const at::Tensor& save_var, c10::optional<double> momentum, int64_t count);

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cpu(
    const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const c10::optional<at::Tensor>& running_mean_,
    const c10::optional<at::Tensor>& running_var_, const c10::optional<at::Tensor>& num_batches_tracked,
    bool training, c10::optional<double> momentum, double eps, c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const bool use_batch =
      check_batch_norm_act_args(input_, weight_, bias_, running_mean_, running_var_, num_batches_tracked,
                                training, act);
  const at::Tensor input = input_.contiguous(layout_of(input_));
  const Geometry g = geometry_of(input);
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
    if (use_batch) compute_stats(input.const_data_ptr<scalar_t>(), g, mean.data_ptr<stat_t>(), var.data_ptr<stat_t>());
    std::vector<acc_t> scale(g.C), shift(g.C), invstd(g.C);
    fold_affine(mean.const_data_ptr<stat_t>(), var.const_data_ptr<stat_t>(),
                weight.defined() ? weight.const_data_ptr<stat_t>() : nullptr,
                bias.defined() ? bias.const_data_ptr<stat_t>() : nullptr, eps, g.C, scale.data(),
                shift.data(), invstd.data());
    dispatch_activation(act, [&](auto tag) {
      apply<decltype(tag)::value>(input.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), g, scale.data(),
                                  shift.data(), acc_t(negative_slope));
    });
  });
  if (training && running_mean_.has_value() && running_mean_->defined()) {
    at::Tensor running_mean = *running_mean_, running_var = *running_var_;
    update_running_stats(running_mean, running_var, num_batches_tracked, mean, var, momentum, g.count());
  }
  return {out, mean, var};
}

// Backward. g = grad_out * act'(pre-activation), with the pre-activation recomputed from
// the input. Per channel: sum_g = sum(g), sum_gx = sum(g * (x - mean)).
//   grad_bias = sum_g, grad_weight = invstd * sum_gx
//   training: dx = scale * (g - sum_g / n - (x - mean) * invstd^2 * sum_gx / n)
//   eval:     dx = scale * g
template <Activation ACT, typename scalar_t, typename acc_t>
void backward_sums(const scalar_t* dy, const scalar_t* x, const Geometry& g, const acc_t* scale,
                   const acc_t* shift, const acc_t* mean, acc_t slope,
                   double* sum_g, double* sum_gx) {
  if (!g.channels_last) {
    at::parallel_for(0, g.C, grain(g.count()), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const acc_t s = scale[c], b = shift[c], m = mean[c];
        double tg = 0, tgx = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          const int64_t off = (n * g.C + c) * g.HW;
          const scalar_t* xp = x + off;
          const scalar_t* dp = dy + off;
          for (int64_t s0 = 0; s0 < g.HW; s0 += kRun) {
            const int64_t s1 = std::min(g.HW, s0 + kRun);
            acc_t ag = 0, agx = 0;
#pragma omp simd reduction(+ : ag, agx)
            for (int64_t i = s0; i < s1; ++i) {
              const acc_t xv = acc_t(xp[i]);
              const acc_t gv = acc_t(dp[i]) * activation_grad_from_input_t<ACT>(affine(xv, s, b), slope);
              ag += gv;
              agx += gv * (xv - m);
            }
            tg += ag;
            tgx += agx;
          }
        }
        sum_g[c] = tg;
        sum_gx[c] = tgx;
      }
    });
    return;
  }
  const int64_t rows = g.count();
  const int64_t block = std::max<int64_t>(1, kRun * 4 / std::max<int64_t>(g.C, 1));
  at::parallel_for(0, g.C, std::max<int64_t>(16, grain(rows)), [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<acc_t> ag(width), agx(width);
    std::vector<double> tg(width, 0.0), tgx(width, 0.0);
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t r1 = std::min(rows, r0 + block);
      std::fill(ag.begin(), ag.end(), acc_t(0));
      std::fill(agx.begin(), agx.end(), acc_t(0));
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xp = x + r * g.C + c0;
        const scalar_t* dp = dy + r * g.C + c0;
        const acc_t* sp = scale + c0;
        const acc_t* bp = shift + c0;
        const acc_t* mp = mean + c0;
        acc_t* agp = ag.data();
        acc_t* agxp = agx.data();
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          const acc_t xv = acc_t(xp[c]);
          const acc_t gv = acc_t(dp[c]) * activation_grad_from_input_t<ACT>(affine(xv, sp[c], bp[c]), slope);
          agp[c] += gv;
          agxp[c] += gv * (xv - mp[c]);
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        tg[c] += ag[c];
        tgx[c] += agx[c];
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      sum_g[c0 + c] = tg[c];
      sum_gx[c0 + c] = tgx[c];
    }
  });
}

template <Activation ACT, typename scalar_t, typename acc_t>
void backward_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, const Geometry& g,
                    const acc_t* scale, const acc_t* shift, const acc_t* mean, const acc_t* k_mean_g,
                    const acc_t* k_x, acc_t slope) {
  // dx = scale * (g - k_mean_g - (x - mean) * k_x); eval passes k_mean_g = k_x = 0.
  if (!g.channels_last) {
    at::parallel_for(0, g.N * g.C, grain(g.HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p % g.C;
        const acc_t s = scale[c], b = shift[c], m = mean[c], km = k_mean_g[c], kx = k_x[c];
        const scalar_t* xp = x + p * g.HW;
        const scalar_t* dp = dy + p * g.HW;
        scalar_t* op = dx + p * g.HW;
#pragma omp simd
        for (int64_t i = 0; i < g.HW; ++i) {
          const acc_t xv = acc_t(xp[i]);
          const acc_t gv = acc_t(dp[i]) * activation_grad_from_input_t<ACT>(affine(xv, s, b), slope);
          op[i] = scalar_t(s * (gv - km - (xv - m) * kx));
        }
      }
    });
    return;
  }
  at::parallel_for(0, g.count(), grain(g.C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* xp = x + r * g.C;
      const scalar_t* dp = dy + r * g.C;
      scalar_t* op = dx + r * g.C;
#pragma omp simd
      for (int64_t c = 0; c < g.C; ++c) {
        const acc_t xv = acc_t(xp[c]);
        const acc_t gv = acc_t(dp[c]) * activation_grad_from_input_t<ACT>(affine(xv, scale[c], shift[c]), slope);
        op[c] = scalar_t(scale[c] * (gv - k_mean_g[c] - (xv - mean[c]) * k_x[c]));
      }
    }
  });
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
    const c10::optional<at::Tensor>& bias_, const at::Tensor& save_mean_, const at::Tensor& save_var_,
    bool training, double eps, c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, save_mean_, save_var_);
  const Geometry g = geometry_of(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  at::Tensor grad_weight = at::zeros({g.C}, b.input.options().dtype(sdt));
  at::Tensor grad_bias = at::zeros({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {grad_input, grad_weight, grad_bias};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    using stat_t = acc_t;
    const BackwardPlan<scalar_t> k(b.mean, b.var, b.weight, b.bias, eps, g.C);
    std::vector<acc_t> k_mean_g(g.C, 0), k_x(g.C, 0);
    std::vector<double> sum_g(g.C), sum_gx(g.C);
    dispatch_activation(act, [&](auto tag) {
      backward_sums<decltype(tag)::value>(b.grad_out.const_data_ptr<scalar_t>(), b.input.const_data_ptr<scalar_t>(),
                                          g, k.scale.data(), k.shift.data(), k.mean.data(), acc_t(negative_slope),
                                          sum_g.data(), sum_gx.data());
    });
    const double n = double(g.count());
    stat_t* gw = grad_weight.data_ptr<stat_t>();
    stat_t* gb = grad_bias.data_ptr<stat_t>();
    for (int64_t c = 0; c < g.C; ++c) {
      gb[c] = stat_t(sum_g[c]);
      gw[c] = stat_t(sum_gx[c] * double(k.invstd[c]));
      if (training) {
        k_mean_g[c] = acc_t(sum_g[c] / n);
        k_x[c] = acc_t(sum_gx[c] / n * double(k.invstd[c]) * double(k.invstd[c]));
      }
    }
    dispatch_activation(act, [&](auto tag) {
      backward_input<decltype(tag)::value>(b.grad_out.const_data_ptr<scalar_t>(), b.input.const_data_ptr<scalar_t>(),
                                           grad_input.data_ptr<scalar_t>(), g, k.scale.data(), k.shift.data(),
                                           k.mean.data(), k_mean_g.data(), k_x.data(), acc_t(negative_slope));
    });
  });
  return {grad_input, grad_weight, grad_bias};
}

// --- The backward split in two, for synchronised BatchNorm: the caller all-reduces the two
// per-channel sums between the reduction and the elementwise pass. -------------------------

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cpu(const at::Tensor& input_) {
  check_bn_input(input_);
  const at::Tensor input = input_.contiguous(layout_of(input_));
  const Geometry g = geometry_of(input);
  const auto sdt = stats_dtype(input);
  at::Tensor mean = at::zeros({g.C}, input.options().dtype(sdt));
  at::Tensor var = at::zeros({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) return {mean, var};  // a rank with no samples adds count 0
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_stats_cpu", [&] {
    using stat_t = acc_type<scalar_t>;
    compute_stats(input.const_data_ptr<scalar_t>(), g, mean.data_ptr<stat_t>(), var.data_ptr<stat_t>());
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce_cpu(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_, const at::Tensor& var_, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = geometry_of(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor sum_dy = at::zeros({g.C}, b.input.options().dtype(sdt));
  at::Tensor sum_dy_xmu = at::zeros({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {sum_dy, sum_dy_xmu};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_reduce_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const BackwardPlan<scalar_t> k(b.mean, b.var, b.weight, b.bias, eps, g.C);
    std::vector<double> sum_g(g.C), sum_gx(g.C);
    dispatch_activation(act, [&](auto tag) {
      backward_sums<decltype(tag)::value>(b.grad_out.const_data_ptr<scalar_t>(), b.input.const_data_ptr<scalar_t>(),
                                          g, k.scale.data(), k.shift.data(), k.mean.data(), acc_t(negative_slope),
                                          sum_g.data(), sum_gx.data());
    });
    acc_t* sd = sum_dy.data_ptr<acc_t>();
    acc_t* sdx = sum_dy_xmu.data_ptr<acc_t>();
    for (int64_t c = 0; c < g.C; ++c) {
      sd[c] = acc_t(sum_g[c]);
      sdx[c] = acc_t(sum_gx[c]);
    }
  });
  return {sum_dy, sum_dy_xmu};
}

at::Tensor batch_norm_act_backward_elemt_cpu(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_, const at::Tensor& var_,
    const at::Tensor& mean_dy_, const at::Tensor& mean_dy_xmu_, double eps, c10::string_view activation,
    double negative_slope) {
  const Activation act = parse_activation(activation);
  check_backward_elemt_sums(input_, mean_dy_, mean_dy_xmu_);
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = geometry_of(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  if (b.input.numel() == 0) return grad_input;
  const at::Tensor mean_dy = as_stats(mean_dy_, b.input), mean_dy_xmu = as_stats(mean_dy_xmu_, b.input);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_elemt_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const BackwardPlan<scalar_t> k(b.mean, b.var, b.weight, b.bias, eps, g.C);
    std::vector<acc_t> k_mean_g(g.C), k_x(g.C);
    for (int64_t c = 0; c < g.C; ++c) {
      k_mean_g[c] = mean_dy.const_data_ptr<acc_t>()[c];
      k_x[c] = mean_dy_xmu.const_data_ptr<acc_t>()[c] * k.invstd[c] * k.invstd[c];
    }
    dispatch_activation(act, [&](auto tag) {
      backward_input<decltype(tag)::value>(b.grad_out.const_data_ptr<scalar_t>(), b.input.const_data_ptr<scalar_t>(),
                                           grad_input.data_ptr<scalar_t>(), g, k.scale.data(), k.shift.data(),
                                           k.mean.data(), k_mean_g.data(), k_x.data(), acc_t(negative_slope));
    });
  });
  return grad_input;
}

// nn.BatchNorm2d's update: the factor is momentum, or the cumulative average 1 / count of
// batches when momentum is None, or 0 when there is no counter either (what
// nn.BatchNorm2d.forward does then). Blended in double from the float batch statistics,
// as the CUDA kernel does, then rounded once to the buffers' dtype.
void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var,
                          const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                          const at::Tensor& save_var, c10::optional<double> momentum, int64_t count) {
  const bool has_counter = num_batches_tracked.has_value() && num_batches_tracked->defined();
  double factor = momentum.value_or(0.0);
  if (has_counter) {
    at::Tensor counter = *num_batches_tracked;
    counter.add_(1);
    if (!momentum.has_value()) factor = 1.0 / double(counter.item<int64_t>());
  }
  const double unbias = double(count) / double(count - 1);
  at::Tensor rm = running_mean.contiguous(), rv = running_var.contiguous();
  const at::Tensor bm = save_mean.to(at::kDouble).contiguous();
  const at::Tensor bv = save_var.to(at::kDouble).contiguous();
  const double* qm = bm.const_data_ptr<double>();
  const double* qv = bv.const_data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rm.scalar_type(), "update_running_stats_cpu", [&] {
    scalar_t* pm = rm.data_ptr<scalar_t>();
    scalar_t* pv = rv.data_ptr<scalar_t>();
    for (int64_t c = 0; c < rm.numel(); ++c) {
      pm[c] = scalar_t((1.0 - factor) * double(pm[c]) + factor * qm[c]);
      pv[c] = scalar_t((1.0 - factor) * double(pv[c]) + factor * qv[c] * unbias);
    }
  });
  if (!rm.is_same(running_mean)) running_mean.copy_(rm);
  if (!rv.is_same(running_var)) running_var.copy_(rv);
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
