// upfirdn2d's arguments: their checks (the same words as fastgan/_checks.py's) and the
// preparation the CPU and CUDA ops share.
#pragma once

#include <sstream>
#include <string>

#include "../fastgan.h"
#include "../fir_taps.h"

namespace fastgan {

// [1, 2]: a list of ints as Python prints it, for messages that read as the reference path's.
inline std::string py_int_list(at::IntArrayRef v) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < v.size(); ++i) out << (i ? ", " : "") << v[i];
  return out.str() + "]";
}

// Per-axis factors and padding, as the op's schema orders them: up [x, y], down [x, y],
// padding [x0, x1, y0, y1]; the filter (fh, fw), separable when 1-D (the outer product of its
// taps with themselves); and the output size.
struct Upfirdn2dGeometry {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t up_x = 1, up_y = 1, down_x = 1, down_y = 1, pad_x0 = 0, pad_x1 = 0, pad_y0 = 0, pad_y1 = 0;
  int64_t fh = 1, fw = 1;
  bool separable = false;
  int64_t out_h = 0, out_w = 0;
};

inline void check_factor(at::IntArrayRef v, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 2 && v[0] >= 1 && v[1] >= 1, "fastgan: upfirdn2d: ", name,
                    " must be 2 integers [x, y], each >= 1, got ", py_int_list(v));
}

inline Upfirdn2dGeometry upfirdn2d_geometry(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef up,
                                            at::IntArrayRef down, at::IntArrayRef padding) {
  check_float_tensor(input, "input");
  TORCH_CHECK_VALUE(input.dim() == 4, "fastgan: upfirdn2d expects a 4-D input (N, C, H, W), got a ", input.dim(),
                    "-D tensor of shape ", py_shape(input.sizes()));
  check_float_tensor(filter, "filter");
  TORCH_CHECK_VALUE((filter.dim() == 1 || filter.dim() == 2) && filter.numel() > 0,
                    "fastgan: upfirdn2d expects a filter of shape (taps,) (separable) or (height, width) with at "
                    "least one tap, got shape ",
                    py_shape(filter.sizes()));
  check_same_device(filter, input, "filter");
  check_factor(up, "up");
  check_factor(down, "down");
  TORCH_CHECK_VALUE(padding.size() == 4, "fastgan: upfirdn2d: padding must be 4 integers [x0, x1, y0, y1], got ",
                    py_int_list(padding));
  Upfirdn2dGeometry g;
  g.N = input.size(0), g.C = input.size(1), g.H = input.size(2), g.W = input.size(3);
  g.up_x = up[0], g.up_y = up[1], g.down_x = down[0], g.down_y = down[1];
  g.pad_x0 = padding[0], g.pad_x1 = padding[1], g.pad_y0 = padding[2], g.pad_y1 = padding[3];
  g.separable = filter.dim() == 1;
  g.fw = filter.size(-1), g.fh = g.separable ? g.fw : filter.size(0);
  // The CUDA kernels do each axis's index math in 32 bits (fir_taps.h).
  TORCH_CHECK_VALUE(fir_axis_fits(g.W, g.up_x, g.down_x, g.pad_x0, g.pad_x1, g.fw) &&
                        fir_axis_fits(g.H, g.up_y, g.down_y, g.pad_y0, g.pad_y1, g.fh),
                    "fastgan: upfirdn2d: the upsampled, padded input must stay below 2^30 samples per axis, got "
                    "input of shape ",
                    py_shape(input.sizes()), ", up ", py_int_list(up), ", padding ", py_int_list(padding));
  g.out_w = fir_out_len(g.W, g.up_x, g.down_x, g.pad_x0, g.pad_x1, g.fw);
  g.out_h = fir_out_len(g.H, g.up_y, g.down_y, g.pad_y0, g.pad_y1, g.fh);
  TORCH_CHECK_VALUE(g.out_w >= 1 && g.out_h >= 1, "fastgan: upfirdn2d: input of shape ", py_shape(input.sizes()),
                    " with up ", py_int_list(up), ", padding ", py_int_list(padding), " and a filter of shape ",
                    py_shape(filter.sizes()),
                    " leaves no output: the upsampled, padded input must have at least "
                    "as many samples as the filter has taps along each axis");
  return g;
}

// What the CPU and CUDA ops walk: the input dense in its own memory format, the filter in the
// accumulation dtype (float; double for double input), and the output in the input's format.
struct Upfirdn2dTensors {
  at::Tensor input, filter, out;
  Upfirdn2dGeometry g;
  bool channels_last = false;
};

inline Upfirdn2dTensors upfirdn2d_tensors(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef up,
                                          at::IntArrayRef down, at::IntArrayRef padding) {
  Upfirdn2dTensors t;
  t.g = upfirdn2d_geometry(input, filter, up, down, padding);
  const auto fmt = layout_of(input);
  t.channels_last = fmt == at::MemoryFormat::ChannelsLast;
  t.input = input.contiguous(fmt);
  t.filter = in_dtype(filter, stats_dtype(input)).contiguous();
  t.out = at::empty({t.g.N, t.g.C, t.g.out_h, t.g.out_w}, input.options().memory_format(fmt));
  return t;
}

}  // namespace fastgan
