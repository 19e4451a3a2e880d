// Autograd of StyleGAN's ops (upfirdn2d, stylegan_bias_act) in C++, one hand-written node per op, as the layers' in
// autograd_layers.cpp (whose opening comment says why).
#include <torch/library.h>

#include <array>
#include <string>
#include <vector>

#include "args/filtered_lrelu.h"
#include "args/stylegan_bias_act.h"
#include "fir_taps.h"
#include "autograd_support.h"

namespace fastgan {
namespace {

using namespace autograd_support;  // NOLINT: the nodes' shared vocabulary
using at::IntArrayRef;

// --- upfirdn2d ------------------------------------------------------------------------------

// upfirdn2d is linear in its input, and its adjoint is upfirdn2d again: the output gradient
// upsampled by the forward's down, padded so that each tap lands where it came from, correlated
// with the flipped filter, downsampled by the forward's up (fir_taps.h's sum, read backwards).
// The backward is a call of the op itself through the dispatcher, so with create_graph it
// records this node again: gradients of any order.
struct Upfirdn2dBackward final : Node {
  SavedVariable filter;
  std::array<int64_t, 2> up{}, down{};
  std::array<int64_t, 4> padding{};
  bool flip_filter = false;
  double gain = 1;
  int64_t in_h = 0, in_w = 0;

  std::string name() const override { return "fastgan::Upfirdn2dBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    filter.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined() || !task_should_compute_output(0)) return variable_list(1);
    const Tensor f = filter.unpack();
    const int64_t fw = f.size(-1), fh = f.dim() == 1 ? fw : f.size(0);
    const int64_t pad[4] = {padding[0], padding[1], padding[2], padding[3]};
    const FirAdjointPadding adjoint = fir_adjoint_padding(fw, fh, up[0], up[1], down[0], down[1], pad, in_h, in_w,
                                                          grad_out.size(2), grad_out.size(3));
    return {op::upfirdn2d().call(grad_out, f, down, up, adjoint.v, !flip_filter, gain)};
  }
};

Tensor upfirdn2d_autograd(const Tensor& input, const Tensor& filter, IntArrayRef up, IntArrayRef down,
                          IntArrayRef padding, bool flip_filter, double gain) {
  refuse_forward_ad("upfirdn2d", input, filter);
  // StyleGAN's filters are fixed (buffers): a gradient for one would be silently dropped.
  TORCH_CHECK_NOT_IMPLEMENTED(!(filter.defined() && filter.requires_grad() && at::GradMode::is_enabled()),
                              "fastgan.upfirdn2d: the filter gets no gradient; pass one that does not require grad "
                              "(filter.detach())");
  auto node = make_node<Upfirdn2dBackward>(input);
  Tensor out = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::upfirdn2d().call(input, filter, up, down, padding, flip_filter, gain);
  }();
  if (node) {
    torch::autograd::set_history(out, node);
    node->filter = save(filter);
    std::copy(up.begin(), up.end(), node->up.begin());
    std::copy(down.begin(), down.end(), node->down.begin());
    std::copy(padding.begin(), padding.end(), node->padding.begin());
    node->flip_filter = flip_filter;
    node->gain = gain;
    node->in_h = input.size(2), node->in_w = input.size(3);
  }
  return out;
}

// --- stylegan_bias_act ----------------------------------------------------------------------

// Saves x and b, not the output: the gradient is recomputed from them in one pass (the
// backward op), and b's gradient is its sum over every other dim. With create_graph the
// forward is re-run in stock ATen ops, which differentiate every activation to any order.
struct StyleganBiasActBackward final : Node {
  SavedVariable x, b;
  int64_t dim = 1;
  std::string act;
  double alpha = 0, gain = 1, clamp = -1;

  std::string name() const override { return "fastgan::StyleganBiasActBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    x.reset_data();
    b.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(2);
    const Tensor xv = x.unpack(), bv = b.unpack();
    if (at::GradMode::is_enabled()) {
      Tensor pre = xv;
      if (bv.defined()) {
        std::vector<int64_t> shape(size_t(xv.dim()), 1);
        shape[size_t(dim)] = -1;
        pre = xv + bv.reshape(shape);
      }
      Tensor y = stylegan_act_tensor(parse_stylegan_act(act), pre, alpha) * gain;
      if (clamp >= 0) y = y.clamp(-clamp, clamp);
      return differentiable_grads(y, {xv, bv}, grad_out);
    }
    const Tensor grad_x = [&] {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      const OptTensor bias = bv.defined() ? OptTensor(bv) : OptTensor();
      return op::stylegan_bias_act_backward().call(grad_out, xv, bias, dim, act, alpha, gain, clamp);
    }();
    variable_list result{task_should_compute_output(0) ? grad_x : Tensor(), Tensor()};
    if (bv.defined() && task_should_compute_output(1)) {
      std::vector<int64_t> others;
      for (int64_t d = 0; d < grad_x.dim(); ++d)
        if (d != dim) others.push_back(d);
      // x 1-D (dim the only one): b's gradient is x's (summing over no dims would sum them all).
      result[1] = others.empty() ? grad_x.to(bv.scalar_type())
                                 : at::sum(grad_x, others, /*keepdim=*/false, stats_dtype(grad_x)).to(bv.scalar_type());
    }
    return result;
  }
};

Tensor stylegan_bias_act_autograd(const Tensor& x, const OptTensor& b, int64_t dim, c10::string_view act, double alpha,
                                  double gain, double clamp) {
  refuse_forward_ad("bias_act", x, value_or_undefined(b));
  auto node = make_node<StyleganBiasActBackward>(x, b);
  Tensor out = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::stylegan_bias_act().call(x, b, dim, act, alpha, gain, clamp);
  }();
  if (node) {
    torch::autograd::set_history(out, node);
    node->x = save(x), node->b = save(b);
    node->dim = stylegan_bias_dim(x, b, dim);
    node->act = std::string(act);
    node->alpha = alpha, node->gain = gain, node->clamp = clamp;
  }
  return out;
}

// --- filtered_lrelu -------------------------------------------------------------------------

// Keeps the filters and the activation's 2-bit record, nothing of the signal. The backward is
// the forward's linear steps read backwards (upfirdn2d's adjoints) around the record's
// factors; with create_graph the factors multiply as a constant tensor, so the result is
// differentiable again in the output's gradient (the record is constant almost everywhere, as
// the leaky ReLU's derivative is).
struct FilteredLreluBackward final : Node {
  SavedVariable fu, fd, sign;
  int64_t up = 1, down = 1;
  int64_t padding[4] = {0, 0, 0, 0};
  double gain = 1, slope = 0.2;
  bool flip_filter = false, channels_last = false;
  int64_t in_h = 0, in_w = 0;
  c10::ScalarType bias_dtype = at::kFloat;

  std::string name() const override { return "fastgan::FilteredLreluBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&fu, &fd, &sign}) v->reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list result(2);
    if (!grads[0].defined()) return result;
    const Tensor grad_out = grads[0].contiguous(), up_f = fu.unpack(), down_f = fd.unpack(), record = sign.unpack();
    const auto [fdh, fdw] = fir_size(down_f);
    const auto [fuh, fuw] = fir_size(up_f);
    const int64_t mid_h = fir_out_len(in_h, up, 1, padding[2], padding[3], fuh);
    const int64_t mid_w = fir_out_len(in_w, up, 1, padding[0], padding[1], fuw);
    const int64_t none[4] = {0, 0, 0, 0}, ones[2] = {1, 1}, ups[2] = {up, up}, downs[2] = {down, down};
    const FirAdjointPadding pad_down =
        fir_adjoint_padding(fdw, fdh, 1, 1, down, down, none, mid_h, mid_w, grad_out.size(2), grad_out.size(3));
    const FirAdjointPadding pad_up = fir_adjoint_padding(fuw, fuh, up, up, 1, 1, padding, in_h, in_w, mid_h, mid_w);
    // grad_out -> the activation's output gradient (upsampled size) -> its input's -> x's.
    const auto run = [&](const Tensor& g_out, const Tensor& rec) {
      Tensor grad_a = op::upfirdn2d().call(g_out, down_f, downs, ones, pad_down.v, !flip_filter, 1.0);
      Tensor grad_z;
      if (at::GradMode::is_enabled()) {
        const Tensor factor = [&] {
          at::AutoDispatchBelowADInplaceOrView below_autograd;
          at::NoGradGuard constant;
          return op::filtered_lrelu_act_backward().call(at::ones_like(grad_a), rec, gain, slope);
        }();
        grad_z = grad_a * factor;
      } else {
        grad_z = op::filtered_lrelu_act_backward().call(grad_a, rec, gain, slope);
      }
      grad_a.reset();  // an upsampled-size tensor: freed before the up pass allocates (peak memory)
      return op::upfirdn2d().call(grad_z, up_f, ones, ups, pad_up.v, !flip_filter, double(up * up));
    };
    // Without a graph to record (the usual backward; not a double backward), the planes go in
    // batches as in the forward (filtered_lrelu_planes_per_chunk), so that the two upsampled-size
    // gradients exist for one batch at a time.
    const int64_t N = grad_out.size(0), C = grad_out.size(1), planes = N * C;
    FilteredLreluGeometry g;
    g.mid_h = mid_h, g.mid_w = mid_w;
    const int64_t batch = at::GradMode::is_enabled() ? planes : filtered_lrelu_planes_per_chunk(grad_out, g);
    Tensor grad_xb;
    if (batch >= planes) {
      grad_xb = run(grad_out, record);
    } else {
      const Tensor flat_out = grad_out.view({planes, 1, grad_out.size(2), grad_out.size(3)});
      const Tensor flat_record = record.view({planes, 1, record.size(2), record.size(3)});
      grad_xb = at::empty({planes, 1, in_h, in_w}, grad_out.options());
      for (int64_t p0 = 0; p0 < planes; p0 += batch) {
        const int64_t p1 = std::min(planes, p0 + batch);
        grad_xb.slice(0, p0, p1).copy_(run(flat_out.slice(0, p0, p1), flat_record.slice(0, p0, p1)));
      }
      grad_xb = grad_xb.view({N, C, in_h, in_w});
    }
    if (task_should_compute_output(0))
      result[0] = channels_last ? grad_xb.contiguous(at::MemoryFormat::ChannelsLast) : grad_xb;
    if (task_should_compute_output(1))
      result[1] = at::sum(grad_xb, {0, 2, 3}, /*keepdim=*/false, stats_dtype(grad_xb)).to(bias_dtype);
    return result;
  }
};

std::tuple<Tensor, Tensor> filtered_lrelu_autograd(const Tensor& x, const Tensor& fu, const Tensor& fd,
                                                   const OptTensor& b, int64_t up, int64_t down, IntArrayRef padding,
                                                   double gain, double slope, double clamp, bool flip_filter) {
  refuse_forward_ad("filtered_lrelu", x, value_or_undefined(b));
  TORCH_CHECK_NOT_IMPLEMENTED(
      !(at::GradMode::is_enabled() && ((fu.defined() && fu.requires_grad()) || (fd.defined() && fd.requires_grad()))),
      "fastgan.filtered_lrelu: the filters get no gradient; pass ones that do not require "
      "grad (fu.detach(), fd.detach())");
  auto node = make_node<FilteredLreluBackward>(x, b);
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op::filtered_lrelu().call(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter);
  }();
  if (node) {
    const auto& [out, sign] = result;
    torch::autograd::set_history(out, node);
    node->fu = save(fu), node->fd = save(fd), node->sign = save(sign);
    node->up = up, node->down = down;
    std::copy(padding.begin(), padding.end(), node->padding);
    node->gain = gain, node->slope = slope, node->flip_filter = flip_filter;
    node->channels_last = layout_of(x) == at::MemoryFormat::ChannelsLast;
    node->in_h = x.size(2), node->in_w = x.size(3);
    if (b.has_value() && b->defined()) node->bias_dtype = b->scalar_type();
  }
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("filtered_lrelu", &filtered_lrelu_autograd);
  m.impl("upfirdn2d", &upfirdn2d_autograd);
  m.impl("stylegan_bias_act", &stylegan_bias_act_autograd);
}

}  // namespace fastgan
