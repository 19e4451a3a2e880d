// filtered_lrelu's arguments (StyleGAN3's: bias, upsampling FIR, leaky ReLU with gain and clamp,
// downsampling FIR): their checks (the same words as fastgan/stylegan/filtered_lrelu.py's), the
// geometry, and the preparation the activation kernels (CPU and CUDA) share. The activation
// keeps a 2-bit record per element of the upsampled signal instead of the signal itself:
// kSignPositive (gradient gain), kSignNegative (gain * slope), kSignClamped (0); four elements
// along a row per byte, rows of ceil(W / 4) bytes.
#pragma once

#include "../fastgan.h"
#include "../fir_taps.h"
#include "stylegan_bias_act.h"
#include "upfirdn2d.h"

namespace fastgan {

constexpr uint8_t kSignPositive = 0, kSignNegative = 1, kSignClamped = 2;
constexpr int64_t kSignsPerByte = 4;

inline void check_fir_filter(const at::Tensor& f, const at::Tensor& x, const char* name) {
  check_float_tensor(f, name);
  TORCH_CHECK_VALUE((f.dim() == 1 || f.dim() == 2) && f.numel() > 0, "fastgan: filtered_lrelu expects ", name,
                    " of shape (taps,) (separable) or (height, width) with at least one tap, got shape ",
                    py_shape(f.sizes()));
  check_same_device(f, x, name);
}

// (height, width) of a filter, a 1-D (separable) one square.
inline std::array<int64_t, 2> fir_size(const at::Tensor& f) {
  const int64_t w = f.size(-1);
  return {f.dim() == 1 ? w : f.size(0), w};
}

struct FilteredLreluGeometry {
  int64_t mid_h = 0, mid_w = 0, out_h = 0, out_w = 0;  // the upsampled, filtered signal; the output
};

inline FilteredLreluGeometry filtered_lrelu_geometry(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                                                     const c10::optional<at::Tensor>& b, int64_t up, int64_t down,
                                                     at::IntArrayRef padding) {
  check_float_tensor(x, "x");
  TORCH_CHECK_VALUE(x.dim() == 4, "fastgan: filtered_lrelu expects a 4-D x (N, C, H, W), got a ", x.dim(),
                    "-D tensor of shape ", py_shape(x.sizes()));
  check_fir_filter(fu, x, "fu");
  check_fir_filter(fd, x, "fd");
  check_stylegan_bias(x, b, 1, "filtered_lrelu");
  TORCH_CHECK_VALUE(up >= 1 && down >= 1, "fastgan: filtered_lrelu: up and down must be integers >= 1, got up ", up,
                    " and down ", down);
  TORCH_CHECK_VALUE(padding.size() == 4, "fastgan: filtered_lrelu: padding must be 4 integers [x0, x1, y0, y1], got ",
                    py_int_list(padding));
  const auto [fuh, fuw] = fir_size(fu);
  const auto [fdh, fdw] = fir_size(fd);
  TORCH_CHECK_VALUE(fir_axis_fits(x.size(3), up, down, padding[0], padding[1], fuw + fdw) &&
                        fir_axis_fits(x.size(2), up, down, padding[2], padding[3], fuh + fdh),
                    "fastgan: filtered_lrelu: the upsampled, padded input must stay below 2^30 samples per axis, got "
                    "x of shape ",
                    py_shape(x.sizes()), ", up ", up, ", padding ", py_int_list(padding));
  FilteredLreluGeometry g;
  g.mid_w = fir_out_len(x.size(3), up, 1, padding[0], padding[1], fuw);
  g.mid_h = fir_out_len(x.size(2), up, 1, padding[2], padding[3], fuh);
  g.out_w = fir_out_len(g.mid_w, 1, down, 0, 0, fdw);
  g.out_h = fir_out_len(g.mid_h, 1, down, 0, 0, fdh);
  TORCH_CHECK_VALUE(g.out_w >= 1 && g.out_h >= 1, "fastgan: filtered_lrelu: x of shape ", py_shape(x.sizes()),
                    " with up ", up, ", down ", down, ", padding ", py_int_list(padding), ", fu of shape ",
                    py_shape(fu.sizes()), " and fd of shape ", py_shape(fd.sizes()), " leaves no output");
  return g;
}

// How many (image, channel) planes filtered_lrelu runs at a time, forward and backward: on the
// CPU, batches whose upsampled signal stays near kChunkBytes, so that the signal and the
// activation's output (or their gradients) exist for one batch at a time rather than for the
// whole input (peak memory: two upsampled-size tensors were most of it); the launches this adds
// cost microseconds against milliseconds of work. On the GPU, every plane at once: a step there
// is launch-bound, and the caching allocator reuses the memory.
inline int64_t filtered_lrelu_planes_per_chunk(const at::Tensor& x, const FilteredLreluGeometry& g) {
  const int64_t planes = x.size(0) * x.size(1);
  if (x.device().type() != at::kCPU) return planes;
  constexpr int64_t kChunkBytes = 8 << 20;
  const int64_t plane_bytes = std::max<int64_t>(1, g.mid_h * g.mid_w * int64_t(x.element_size()));
  return std::clamp<int64_t>(kChunkBytes / plane_bytes, 1, std::max<int64_t>(planes, 1));
}

// The activation's operands: the upsampled signal z (made NCHW-contiguous: the record's rows
// are its rows) and the output a and record, or for the backward the gradient of a and the record.
struct FilteredLreluActTensors {
  at::Tensor z, out, sign;
  int64_t rows = 0, width = 0, bytes_per_row = 0;
};

inline int64_t sign_bytes_per_row(int64_t width) { return (width + kSignsPerByte - 1) / kSignsPerByte; }

inline FilteredLreluActTensors filtered_lrelu_act_tensors(const at::Tensor& z) {
  check_float_tensor(z, "z");
  TORCH_CHECK_VALUE(z.dim() == 4, "fastgan: filtered_lrelu_act expects a 4-D z (N, C, H, W), got shape ",
                    py_shape(z.sizes()));
  FilteredLreluActTensors t;
  t.z = z.contiguous();
  t.out = at::empty_like(t.z);
  t.width = z.size(3);
  t.rows = t.width == 0 ? 0 : z.numel() / t.width;
  t.bytes_per_row = sign_bytes_per_row(t.width);
  t.sign = at::empty({z.size(0), z.size(1), z.size(2), t.bytes_per_row}, z.options().dtype(at::kByte));
  return t;
}

inline FilteredLreluActTensors filtered_lrelu_act_backward_tensors(const at::Tensor& grad_a, const at::Tensor& sign) {
  check_float_tensor(grad_a, "grad_a");
  TORCH_CHECK_VALUE(grad_a.dim() == 4, "fastgan: filtered_lrelu_act_backward expects a 4-D grad_a, got shape ",
                    py_shape(grad_a.sizes()));
  const int64_t bytes = sign_bytes_per_row(grad_a.size(3));
  TORCH_CHECK_VALUE(sign.defined() && sign.scalar_type() == at::kByte && sign.dim() == 4 &&
                        sign.size(0) == grad_a.size(0) && sign.size(1) == grad_a.size(1) &&
                        sign.size(2) == grad_a.size(2) && sign.size(3) == bytes,
                    "fastgan: filtered_lrelu_act_backward: sign must be the uint8 record of a (", grad_a.size(0), ", ",
                    grad_a.size(1), ", ", grad_a.size(2), ", ", grad_a.size(3), ") signal, of shape (", grad_a.size(0),
                    ", ", grad_a.size(1), ", ", grad_a.size(2), ", ", bytes, "), got ",
                    sign.defined() ? py_dtype(sign.scalar_type()) + " of shape " + py_shape(sign.sizes()) : "None");
  check_same_device(sign, grad_a, "sign");
  FilteredLreluActTensors t;
  t.z = grad_a.contiguous();
  t.sign = sign.contiguous();
  t.out = at::empty_like(t.z);
  t.width = grad_a.size(3);
  t.rows = t.width == 0 ? 0 : grad_a.numel() / t.width;
  t.bytes_per_row = bytes;
  return t;
}

// One element's activation and its record code: y = clamp(lrelu(v, slope) * gain, +-clamp).
template <typename T>
FASTGAN_INLINE T filtered_lrelu_point(T v, T gain, T slope, T clamp, uint8_t& code) {
  const T y = (v > T(0) ? v : v * slope) * gain;
  code = !clamp_passes(y, clamp) ? kSignClamped : (v > T(0) ? kSignPositive : kSignNegative);
  return clamp_symmetric(y, clamp);
}

// The gradient factor a record code stands for.
template <typename T>
FASTGAN_INLINE T filtered_lrelu_factor(unsigned code, T gain, T slope) {
  return code == kSignPositive ? gain : (code == kSignNegative ? gain * slope : T(0));
}

}  // namespace fastgan
