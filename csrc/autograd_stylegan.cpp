// Autograd of StyleGAN's ops (upfirdn2d, stylegan_bias_act) in C++, one hand-written node per op, as the layers' in
// autograd_layers.cpp (whose opening comment says why).
#include <torch/library.h>

#include <array>
#include <string>
#include <vector>

#include "args/stylegan_bias_act.h"
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
    const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
    // Forward: out[o] = sum_k F[k] U[o * down + k - pad0]. The input's gradient at sample i
    // collects F[i * up + pad0 - o * down] from every output o, which is upfirdn2d of the
    // output gradient with up and down swapped, the filter flipped (F read backwards), pad0'
    // = taps - pad0 - 1, and pad1' chosen so that exactly in samples come out.
    const std::array<int64_t, 4> grad_padding{fw - padding[0] - 1, in_w * up[0] - out_w * down[0] + padding[0] - up[0] + 1,
                                              fh - padding[2] - 1, in_h * up[1] - out_h * down[1] + padding[2] - up[1] + 1};
    return {op::upfirdn2d().call(grad_out, f, down, up, grad_padding, !flip_filter, gain)};
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
      result[1] = at::sum(grad_x, others, /*keepdim=*/false, stats_dtype(grad_x)).to(bv.scalar_type());
    }
    return result;
  }
};

Tensor stylegan_bias_act_autograd(const Tensor& x, const OptTensor& b, int64_t dim, c10::string_view act,
                                  double alpha, double gain, double clamp) {
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

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("upfirdn2d", &upfirdn2d_autograd);
  m.impl("stylegan_bias_act", &stylegan_bias_act_autograd);
}

}  // namespace fastgan
