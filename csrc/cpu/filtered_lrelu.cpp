// The CPU ops of filtered_lrelu's activation (args/filtered_lrelu.h): the leaky ReLU with gain
// and clamp over the upsampled signal, writing a 2-bit record per element, and its backward,
// which reads only that record. The op comes first; its loops follow, compiled once per
// instruction set (for_each_isa.h).
#ifndef FASTGAN_CPU_ISA  // the op, compiled once
#include <torch/library.h>

#include "../fastgan.h"
#include "../args/filtered_lrelu.h"
#include "isa.h"

#define FASTGAN_CPU_LOOPS "filtered_lrelu.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_act_cpu(const at::Tensor& z, double gain, double slope,
                                                          double clamp) {
  const FilteredLreluActTensors t = filtered_lrelu_act_tensors(z);
  if (t.rows > 0)
    FASTGAN_CPU_LOOP(filtered_lrelu_act_entry)(t.z.scalar_type(), t.z.const_data_ptr(), t.out.data_ptr(),
                                               t.sign.data_ptr<uint8_t>(), t.rows, t.width, gain, slope, clamp);
  return {t.out, t.sign};
}

at::Tensor filtered_lrelu_act_backward_cpu(const at::Tensor& grad_a, const at::Tensor& sign, double gain,
                                           double slope) {
  const FilteredLreluActTensors t = filtered_lrelu_act_backward_tensors(grad_a, sign);
  if (t.rows > 0)
    FASTGAN_CPU_LOOP(filtered_lrelu_act_backward_entry)(t.z.scalar_type(), t.z.const_data_ptr(),
                                                        t.sign.const_data_ptr<uint8_t>(), t.out.data_ptr(), t.rows,
                                                        t.width, gain, slope);
  return t.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("filtered_lrelu_act", &filtered_lrelu_act_cpu);
  m.impl("filtered_lrelu_act_backward", &filtered_lrelu_act_backward_cpu);
}

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)

namespace {

// Rows of `width` elements; each row's record is ceil(width / 4) bytes, written whole by the
// thread that owns the row.
template <typename scalar_t>
void filtered_lrelu_act_loop(const scalar_t* z, scalar_t* a, uint8_t* sign, int64_t rows, int64_t width, double gain_,
                             double slope_, double clamp_) {
  using acc_t = acc_type<scalar_t>;
  const acc_t gain = acc_t(gain_), slope = acc_t(slope_), clamp = acc_t(clamp_);
  const int64_t bytes = sign_bytes_per_row(width);
  at::parallel_for(0, rows, grain(width), [&, gain, slope, clamp](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* zr = z + r * width;
      scalar_t* ar = a + r * width;
      uint8_t* sr = sign + r * bytes;
      for (int64_t q = 0; q < bytes; ++q) {
        unsigned packed = 0;
        const int64_t w0 = q * kSignsPerByte, n = std::min<int64_t>(kSignsPerByte, width - w0);
        for (int64_t k = 0; k < n; ++k) {
          uint8_t code;
          ar[w0 + k] = store<scalar_t>(filtered_lrelu_point(load(zr[w0 + k]), gain, slope, clamp, code));
          packed |= unsigned(code) << (2 * k);
        }
        sr[q] = uint8_t(packed);
      }
    }
  });
}

template <typename scalar_t>
void filtered_lrelu_act_backward_loop(const scalar_t* grad_a, const uint8_t* sign, scalar_t* grad_z, int64_t rows,
                                      int64_t width, double gain_, double slope_) {
  using acc_t = acc_type<scalar_t>;
  const acc_t gain = acc_t(gain_), slope = acc_t(slope_);
  const int64_t bytes = sign_bytes_per_row(width);
  at::parallel_for(0, rows, grain(width), [&, gain, slope](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* gr = grad_a + r * width;
      const uint8_t* sr = sign + r * bytes;
      scalar_t* out = grad_z + r * width;
#pragma omp simd
      for (int64_t w = 0; w < width; ++w) {
        const unsigned code = (unsigned(sr[w / kSignsPerByte]) >> (2 * (w % kSignsPerByte))) & 3u;
        out[w] = store<scalar_t>(load(gr[w]) * filtered_lrelu_factor(code, gain, slope));
      }
    }
  });
}

void filtered_lrelu_act_entry(c10::ScalarType dt, const void* z, void* a, uint8_t* sign, int64_t rows, int64_t width,
                              double gain, double slope, double clamp) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_filtered_lrelu_act", [&] {
    filtered_lrelu_act_loop(static_cast<const scalar_t*>(z), static_cast<scalar_t*>(a), sign, rows, width, gain, slope,
                            clamp);
  });
}

void filtered_lrelu_act_backward_entry(c10::ScalarType dt, const void* grad_a, const uint8_t* sign, void* grad_z,
                                       int64_t rows, int64_t width, double gain, double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_filtered_lrelu_act_backward", [&] {
    filtered_lrelu_act_backward_loop(static_cast<const scalar_t*>(grad_a), sign, static_cast<scalar_t*>(grad_z), rows,
                                     width, gain, slope);
  });
}

}  // namespace

#endif  // FASTGAN_CPU_ISA
