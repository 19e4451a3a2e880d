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
  const FilteredLreluGeometry g = filtered_lrelu_geometry(x, fu, fd, b, up, down, padding);
  Tensor xb = x.contiguous();  // NCHW: the record's rows are the upsampled signal's rows
  if (b.has_value() && b->defined()) xb = xb + b->view({1, -1, 1, 1});
  const int64_t ups[2] = {up, up}, ones[2] = {1, 1}, downs[2] = {down, down}, none[4] = {0, 0, 0, 0};
  // Each plane is filtered on its own, so the planes go in batches (filtered_lrelu_planes_per_chunk),
  // viewed as (planes, 1, H, W).
  const int64_t N = x.size(0), C = x.size(1), planes = N * C;
  const int64_t batch = filtered_lrelu_planes_per_chunk(x, g);
  const auto run = [&](const Tensor& in) {
    Tensor z = op::upfirdn2d().call(in, fu, ups, ones, padding, flip_filter, double(up * up));
    auto [a, sign] = op::filtered_lrelu_act().call(z, gain, slope, clamp);
    z.reset();  // the upsampled signal's first copy: freed before the down pass allocates (peak memory)
    return std::make_tuple(op::upfirdn2d().call(a, fd, ones, downs, none, flip_filter, 1.0), sign);
  };
  Tensor out, sign;
  if (batch >= planes) {
    std::tie(out, sign) = run(xb);
  } else {
    const Tensor flat = xb.view({planes, 1, x.size(2), x.size(3)});
    out = at::empty({planes, 1, g.out_h, g.out_w}, x.options().memory_format(at::MemoryFormat::Contiguous));
    sign = at::empty({planes, 1, g.mid_h, sign_bytes_per_row(g.mid_w)}, x.options().dtype(at::kByte));
    for (int64_t p0 = 0; p0 < planes; p0 += batch) {
      const int64_t p1 = std::min(planes, p0 + batch);
      const auto [o, s] = run(flat.slice(0, p0, p1));
      out.slice(0, p0, p1).copy_(o);
      sign.slice(0, p0, p1).copy_(s);
    }
    out = out.view({N, C, g.out_h, g.out_w});
    sign = sign.view({N, C, g.mid_h, sign_bytes_per_row(g.mid_w)});
  }
  if (layout_of(x) == at::MemoryFormat::ChannelsLast) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return {out, sign};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CompositeExplicitAutograd, m) { m.impl("filtered_lrelu", &filtered_lrelu); }

}  // namespace fastgan
