// Host side of the CUDA BatchNorm + activation ops: checks, layouts, grid plans and launches.
// The kernels, and how the work is split between them, are in batch_norm_kernels.cuh.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>

#include "batch_norm_kernels.cuh"
#include "../args/batch_norm_act.h"

namespace fastgan {
namespace cuda {
namespace {

using namespace bn;

using Plan = GridPlan;

// How a (channels x elements-per-channel) problem is spread over the grid: NHWC as rows of
// channels (plan_rows for the elementwise kernels, plan_reduction_rows for the reductions, whose
// tiles' last blocks finish them); NCHW with one channel per blockIdx.x and its elements split
// over blockIdx.y, the same for both.
enum class Pass { Elementwise, Reduction };

template <typename scalar_t>
Plan make_plan(const Geometry& g, int vec, Pass pass) {
  using A = acc_type<scalar_t>;
  constexpr int blocks_per_sm = kBlocksPerSmOf<scalar_t>;
  if (g.channels_last)
    return pass == Pass::Reduction ? plan_reduction_rows<A>(g.N * g.HW, g.C, vec, blocks_per_sm)
                                   : plan_rows(g.N * g.HW, g.C, vec, blocks_per_sm);
  const int64_t total = g.N * g.HW;
  const int64_t s = std::min(row_splits(total, int64_t(kThreads) * vec, g.C, blocks_per_sm), max_finish_splits<A>(1));
  Plan p;
  p.chunk = ceil_div(ceil_div(total, s), vec) * vec;
  p.splits = int(ceil_div(total, p.chunk));
  p.block = dim3(kThreads, 1);
  p.grid = dim3(unsigned(g.C), unsigned(p.splits));
  return p;
}

// Whether the VEC-wide path applies: whole packs along the contiguous dimension, and storage
// aligned to a pack.
template <typename scalar_t, int VEC>
bool can_vectorize(const Geometry& g, std::initializer_list<const void*> ptrs) {
  if ((g.channels_last ? g.C : g.HW) % VEC != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % (VEC * sizeof(scalar_t)) != 0) return false;
  return true;
}

// Calls f(std::integral_constant<int, VEC>, std::integral_constant<bool, CL>), VEC = V_NCHW or
// V_CL where the pointers allow it (can_vectorize), else 1.
template <typename scalar_t, int V_NCHW, int V_CL, typename F>
void dispatch_layout(const Geometry& g, std::initializer_list<const void*> ptrs, F&& f) {
  if (g.channels_last) {
    if (can_vectorize<scalar_t, V_CL>(g, ptrs))
      f(std::integral_constant<int, V_CL>(), std::true_type());
    else
      f(std::integral_constant<int, 1>(), std::true_type());
  } else {
    if (can_vectorize<scalar_t, V_NCHW>(g, ptrs))
      f(std::integral_constant<int, V_NCHW>(), std::false_type());
    else
      f(std::integral_constant<int, 1>(), std::false_type());
  }
}

// The forward kernels move 16 bytes per access; the backward ones backward_vec_width.
template <typename scalar_t, typename F>
void dispatch_forward_layout(const Geometry& g, std::initializer_list<const void*> ptrs, F&& f) {
  dispatch_layout<scalar_t, vec_width<scalar_t>(), vec_width<scalar_t>()>(g, ptrs, f);
}

template <typename scalar_t, typename F>
void dispatch_backward_layout(const Geometry& g, std::initializer_list<const void*> ptrs, F&& f) {
  dispatch_layout<scalar_t, backward_vec_width<scalar_t, false>(), backward_vec_width<scalar_t, true>()>(g, ptrs, f);
}

template <typename A>
const A* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<A>() : nullptr;
}

template <typename A>
ChannelParams<A> channel_params(const at::Tensor& mean, const at::Tensor& var, const at::Tensor& weight,
                                const at::Tensor& bias, double eps) {
  return {mean.const_data_ptr<A>(), var.const_data_ptr<A>(), ptr_or_null<A>(weight), ptr_or_null<A>(bias), A(eps)};
}

BufferType buffer_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return BufferType::Float;
    case at::kDouble: return BufferType::Double;
    case at::kHalf: return BufferType::Half;
    case at::kBFloat16: return BufferType::BFloat16;
    default: TORCH_INTERNAL_ASSERT(false, "running statistics of ", t.scalar_type(), " passed the argument checks");
  }
}

// The update of running_mean / running_var (undefined: none).
RunningStats running_stats(const at::Tensor& running_mean, const at::Tensor& running_var,
                           const c10::optional<at::Tensor>& num_batches_tracked, c10::optional<double> momentum,
                           int64_t count) {
  if (!running_mean.defined()) return RunningStats{};
  const bool has_counter = num_batches_tracked.has_value() && num_batches_tracked->defined();
  return {running_mean.data_ptr(),          running_mean.stride(0),
          running_var.data_ptr(),           running_var.stride(0),
          buffer_type(running_mean),        has_counter ? num_batches_tracked->data_ptr<int64_t>() : nullptr,
          momentum.value_or(0.0),           !momentum.has_value(),
          double(count) / double(count - 1)};
}

// The statistics kernel: the batch statistics into mean/var, scale and shift into coef (when
// wanted), and the running-stat update when running_mean is defined; one launch and one
// scratch allocation (the partials, and coef after them, which the caller's apply reads: it
// keeps the returned scratch alive until then).
template <typename A>
struct Statistics {
  at::Tensor scratch;
  const A* coef;  // nullptr when not wanted
};

template <typename scalar_t, int VEC, bool CL>
Statistics<acc_type<scalar_t>> batch_statistics(const at::Tensor& input, const Geometry& g, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps, at::Tensor& mean, at::Tensor& var,
                                                bool want_coef, const at::Tensor& running_mean,
                                                const at::Tensor& running_var,
                                                const c10::optional<at::Tensor>& num_batches_tracked,
                                                c10::optional<double> momentum) {
  using A = acc_type<scalar_t>;
  const Plan plan = make_plan<scalar_t>(g, VEC, Pass::Reduction);
  // coef first, so that it is 16-byte aligned for the apply kernel's vector loads.
  const int64_t coef_size = want_coef ? 2 * g.C : 0;
  at::Tensor scratch = at::empty({coef_size + g.C * plan.splits * 2}, mean.options());
  A* coef = want_coef ? scratch.data_ptr<A>() : nullptr;
  A* partial = scratch.data_ptr<A>() + coef_size;
  const at::Tensor tickets = reduction_tickets(input, int64_t(plan.grid.x) + 1);
  const FinalizeArgs<A> fin{plan.splits, A(g.N * g.HW),      ptr_or_null<A>(weight), ptr_or_null<A>(bias),
                            A(eps),      mean.data_ptr<A>(), var.data_ptr<A>(),      coef};
  launch(stats_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, 0, current_stream(), input.const_data_ptr<scalar_t>(),
         g.N, g.C, g.HW, plan.chunk, partial, fin,
         running_stats(running_mean, running_var, num_batches_tracked, momentum, g.N * g.HW),
         reinterpret_cast<unsigned int*>(tickets.data_ptr<int>()));
  return {scratch, coef};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cuda(
    const at::Tensor& input_, const c10::optional<at::Tensor>& weight_, const c10::optional<at::Tensor>& bias_,
    const c10::optional<at::Tensor>& running_mean_, const c10::optional<at::Tensor>& running_var_,
    const c10::optional<at::Tensor>& num_batches_tracked, bool training, c10::optional<double> momentum, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const bool use_batch = check_batch_norm_act_args(input_, weight_, bias_, running_mean_, running_var_,
                                                   num_batches_tracked, training, act);
  DeviceGuard guard(input_.device());
  const auto fmt = layout_of(input_);
  const at::Tensor input = input_.contiguous(fmt);
  const Geometry g = geometry_of(input);
  TORCH_CHECK(g.C < (int64_t(1) << 31), "fastgan: too many channels: ", g.C);
  const auto sdt = stats_dtype(input);
  at::Tensor out = at::empty_like(input, input.options(), fmt);
  at::Tensor mean = at::empty({g.C}, input.options().dtype(sdt));
  at::Tensor var = at::empty({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) {  // eval returns the running statistics, as the CPU op does
    if (!use_batch) mean.copy_(*running_mean_), var.copy_(*running_var_);
    return {out, mean, var};
  }
  const at::Tensor weight = as_stats(weight_, input), bias = as_stats(bias_, input);
  const bool update = training && running_mean_.has_value() && running_mean_->defined();
  at::Tensor running_mean = update ? *running_mean_ : at::Tensor(), running_var = update ? *running_var_ : at::Tensor();
  const at::Tensor rmean = use_batch ? at::Tensor() : as_stats(running_mean_, input);
  const at::Tensor rvar = use_batch ? at::Tensor() : as_stats(running_var_, input);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_act_cuda", [&] {
    using A = acc_type<scalar_t>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    dispatch_forward_layout<scalar_t>(g, {x, y}, [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan<scalar_t>(g, VEC, Pass::Elementwise);
      ApplyArgs<A> args{nullptr, ChannelParams<A>{}, nullptr, nullptr};
      Statistics<A> stats;
      if (use_batch) {
        stats = batch_statistics<scalar_t, VEC, CL>(input, g, weight, bias, eps, mean, var, true, running_mean,
                                                    running_var, num_batches_tracked, momentum);
        args.coef = stats.coef;
      } else {
        args = {nullptr, channel_params<A>(rmean, rvar, weight, bias, eps), mean.data_ptr<A>(), var.data_ptr<A>()};
      }
      dispatch_act(act, [&](auto tag) {
        launch(apply_kernel<scalar_t, VEC, CL, decltype(tag)::value>, plan.grid, plan.block, 0, current_stream(), x, y,
               g.N, g.C, g.HW, plan.chunk, args, A(negative_slope));
      });
    });
  });
  return {out, mean, var};
}

// The backward reduction: per-channel sum_dy and sum_dy_xmu, and grad_weight / grad_bias where
// wanted (non-null); one launch. plan: make_plan(..., Pass::Reduction); partial: g.C *
// plan.splits * 2 values of scratch.
template <typename scalar_t, int VEC, bool CL>
void backward_sums(const BackwardInputs& b, const Geometry& g, const Plan& plan, double eps, Activation act,
                   double negative_slope, acc_type<scalar_t>* partial, acc_type<scalar_t>* sum_dy,
                   acc_type<scalar_t>* sum_dy_xmu, acc_type<scalar_t>* grad_weight, acc_type<scalar_t>* grad_bias) {
  using A = acc_type<scalar_t>;
  const ChannelParams<A> p = channel_params<A>(b.mean, b.var, b.weight, b.bias, eps);
  const at::Tensor tickets = reduction_tickets(b.input, plan.grid.x);
  const BackwardSumsArgs<A> sums{plan.splits, sum_dy, sum_dy_xmu, grad_weight, grad_bias};
  dispatch_act(act, [&](auto tag) {
    launch(backward_reduce_kernel<scalar_t, VEC, CL, decltype(tag)::value>, plan.grid, plan.block, 0, current_stream(),
           b.grad_out.const_data_ptr<scalar_t>(), b.input.const_data_ptr<scalar_t>(), g.N, g.C, g.HW, plan.chunk, p,
           A(negative_slope), partial, sums, reinterpret_cast<unsigned int*>(tickets.data_ptr<int>()));
  });
}

template <typename scalar_t, int VEC, bool CL>
void backward_input(const BackwardInputs& b, const Geometry& g, double eps, Activation act, double negative_slope,
                    const acc_type<scalar_t>* sum_dy, const acc_type<scalar_t>* sum_dy_xmu, double inv_count,
                    bool training, at::Tensor& grad_input) {
  using A = acc_type<scalar_t>;
  const Plan plan = make_plan<scalar_t>(g, VEC, Pass::Elementwise);
  const InputGradArgs<A> args{channel_params<A>(b.mean, b.var, b.weight, b.bias, eps), sum_dy, sum_dy_xmu, A(inv_count),
                              training};
  dispatch_act(act, [&](auto tag) {
    launch(backward_input_kernel<scalar_t, VEC, CL, decltype(tag)::value>, plan.grid, plan.block, 0, current_stream(),
           b.grad_out.const_data_ptr<scalar_t>(), b.input.const_data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(),
           g.N, g.C, g.HW, plan.chunk, args, A(negative_slope));
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cuda(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& save_mean_, const at::Tensor& save_var_, bool training,
    double eps, c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  DeviceGuard guard(input_.device());
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, save_mean_, save_var_);
  const Geometry g = geometry_of(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  at::Tensor grad_weight = at::empty({g.C}, b.input.options().dtype(sdt));
  at::Tensor grad_bias = at::empty({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {grad_input, grad_weight.zero_(), grad_bias.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_cuda", [&] {
    using A = acc_type<scalar_t>;
    const auto ptrs = {b.input.const_data_ptr(), b.grad_out.const_data_ptr(), grad_input.const_data_ptr()};
    dispatch_backward_layout<scalar_t>(g, ptrs, [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan<scalar_t>(g, VEC, Pass::Reduction);
      // One scratch allocation: sum_dy, sum_dy_xmu, then the partials.
      at::Tensor scratch = at::empty({g.C * (2 + int64_t(plan.splits) * 2)}, b.input.options().dtype(sdt));
      A* sum_dy = scratch.data_ptr<A>();
      A* sum_dy_xmu = sum_dy + g.C;
      backward_sums<scalar_t, VEC, CL>(b, g, plan, eps, act, negative_slope, sum_dy_xmu + g.C, sum_dy, sum_dy_xmu,
                                       grad_weight.data_ptr<A>(), grad_bias.data_ptr<A>());
      backward_input<scalar_t, VEC, CL>(b, g, eps, act, negative_slope, sum_dy, sum_dy_xmu, 1.0 / double(g.N * g.HW),
                                        training, grad_input);
    });
  });
  return {grad_input, grad_weight, grad_bias};
}

void batch_norm_update_stats_cuda(at::Tensor& running_mean, at::Tensor& running_var,
                                  const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                                  const at::Tensor& save_var, c10::optional<double> momentum, int64_t count) {
  check_update_stats_args(running_mean, running_var, num_batches_tracked, save_mean, save_var, count);
  DeviceGuard guard(running_mean.device());
  const at::Tensor mean = save_mean.contiguous(), var = save_var.to(save_mean.scalar_type()).contiguous();
  const RunningStats r = running_stats(running_mean, running_var, num_batches_tracked, momentum, count);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean.scalar_type(), "bn_update_stats", [&] {
    launch(update_stats_kernel<scalar_t>, 1, kThreads, 0, current_stream(), r, mean.const_data_ptr<scalar_t>(),
           var.const_data_ptr<scalar_t>(), running_mean.numel());
  });
}

// --- Synchronised BatchNorm: the same kernels, split where the caller all-reduces. ---------

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cuda(const at::Tensor& input_) {
  check_bn_input(input_);
  DeviceGuard guard(input_.device());
  const at::Tensor input = input_.contiguous(layout_of(input_));
  const Geometry g = geometry_of(input);
  TORCH_CHECK(g.C < (int64_t(1) << 31), "fastgan: too many channels: ", g.C);
  const auto sdt = stats_dtype(input);
  at::Tensor mean = at::empty({g.C}, input.options().dtype(sdt));
  at::Tensor var = at::empty({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) return {mean.zero_(), var.zero_()};  // a rank with no samples adds count 0
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_stats_cuda", [&] {
    dispatch_forward_layout<scalar_t>(g, {input.const_data_ptr()}, [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      batch_statistics<scalar_t, VEC, CL>(input, g, at::Tensor(), at::Tensor(), 0.0, mean, var, false, at::Tensor(),
                                          at::Tensor(), c10::nullopt, c10::nullopt);
    });
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce_cuda(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_, const at::Tensor& var_, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  DeviceGuard guard(input_.device());
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = geometry_of(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor sum_dy = at::empty({g.C}, b.input.options().dtype(sdt));
  at::Tensor sum_dy_xmu = at::empty({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {sum_dy.zero_(), sum_dy_xmu.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_reduce_cuda", [&] {
        using A = acc_type<scalar_t>;
        dispatch_backward_layout<scalar_t>(
            g, {b.input.const_data_ptr(), b.grad_out.const_data_ptr()}, [&](auto vec_c, auto cl_c) {
              constexpr int VEC = decltype(vec_c)::value;
              constexpr bool CL = decltype(cl_c)::value;
              const Plan plan = make_plan<scalar_t>(g, VEC, Pass::Reduction);
              at::Tensor partial = at::empty({g.C * int64_t(plan.splits) * 2}, b.input.options().dtype(sdt));
              backward_sums<scalar_t, VEC, CL>(b, g, plan, eps, act, negative_slope, partial.data_ptr<A>(),
                                               sum_dy.data_ptr<A>(), sum_dy_xmu.data_ptr<A>(), nullptr, nullptr);
            });
      });
  return {sum_dy, sum_dy_xmu};
}

at::Tensor batch_norm_act_backward_elemt_cuda(const at::Tensor& grad_out_, const at::Tensor& input_,
                                              const c10::optional<at::Tensor>& weight_,
                                              const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_,
                                              const at::Tensor& var_, const at::Tensor& mean_dy_,
                                              const at::Tensor& mean_dy_xmu_, double eps, c10::string_view activation,
                                              double negative_slope) {
  const Activation act = parse_activation(activation);
  check_backward_elemt_sums(input_, mean_dy_, mean_dy_xmu_);
  DeviceGuard guard(input_.device());
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = geometry_of(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  if (b.input.numel() == 0) return grad_input;
  // Already divided by the global count, so the kernel multiplies them by 1.
  const at::Tensor mean_dy = as_stats(mean_dy_, b.input), mean_dy_xmu = as_stats(mean_dy_xmu_, b.input);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_elemt_cuda", [&] {
        const auto ptrs = {b.input.const_data_ptr(), b.grad_out.const_data_ptr(), grad_input.const_data_ptr()};
        dispatch_backward_layout<scalar_t>(g, ptrs, [&](auto vec_c, auto cl_c) {
          constexpr int VEC = decltype(vec_c)::value;
          constexpr bool CL = decltype(cl_c)::value;
          backward_input<scalar_t, VEC, CL>(b, g, eps, act, negative_slope,
                                            mean_dy.const_data_ptr<acc_type<scalar_t>>(),
                                            mean_dy_xmu.const_data_ptr<acc_type<scalar_t>>(), 1.0, true, grad_input);
        });
      });
  return grad_input;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("batch_norm_act", &cuda::batch_norm_act_cuda);
  m.impl("batch_norm_act_backward", &cuda::batch_norm_act_backward_cuda);
  m.impl("batch_norm_update_stats", &cuda::batch_norm_update_stats_cuda);
  m.impl("batch_norm_stats", &cuda::batch_norm_stats_cuda);
  m.impl("batch_norm_act_backward_reduce", &cuda::batch_norm_act_backward_reduce_cuda);
  m.impl("batch_norm_act_backward_elemt", &cuda::batch_norm_act_backward_elemt_cuda);
}

}  // namespace fastgan
