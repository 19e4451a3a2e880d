// StyleGAN's composed op, filtered_lrelu, once for every device (CompositeExplicitAutograd, as
// layers.cpp's): bias, upfirdn2d up, the activation with its 2-bit record, upfirdn2d down, each a
// fastgan kernel op. The upsampled signal (up^2 times the input) exists only inside this call;
// the autograd node (autograd_stylegan.cpp) keeps the record, a sixteenth of it in float32.
#include <torch/library.h>

#include "fastgan.h"
#include "args/filtered_lrelu.h"
#include "op_list.h"

namespace fastgan {
namespace {

using op::OptTensor;
using op::Tensor;

std::tuple<Tensor, Tensor> filtered_lrelu(const Tensor& x, const Tensor& fu, const Tensor& fd, const OptTensor& b,
                                          int64_t up, int64_t down, at::IntArrayRef padding, double gain, double slope,
                                          double clamp, bool flip_filter) {
  filtered_lrelu_geometry(x, fu, fd, b, up, down, padding);
  Tensor xb = x.contiguous();  // NCHW: the record's rows are the upsampled signal's rows
  if (b.has_value() && b->defined()) xb = xb + b->view({1, -1, 1, 1});
  const int64_t ups[2] = {up, up}, ones[2] = {1, 1}, downs[2] = {down, down}, none[4] = {0, 0, 0, 0};
  Tensor z = op::upfirdn2d().call(xb, fu, ups, ones, padding, flip_filter, double(up * up));
  xb.reset();
  const auto [a, sign] = op::filtered_lrelu_act().call(z, gain, slope, clamp);
  z.reset();  // the upsampled signal's first copy: freed before the down pass allocates (peak memory)
  Tensor out = op::upfirdn2d().call(a, fd, ones, downs, none, flip_filter, 1.0);
  if (layout_of(x) == at::MemoryFormat::ChannelsLast) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return {out, sign};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CompositeExplicitAutograd, m) { m.impl("filtered_lrelu", &filtered_lrelu); }

}  // namespace fastgan
