// The CPU op of a Linear layer's bias + activation, and its backward (the activation's
// gradient and the bias gradient from one pass). The op comes first; its loops follow,
// compiled once per instruction set (for_each_isa.h), and the op calls the set this processor
// runs (FASTGAN_CPU_LOOP).
#ifndef FASTGAN_CPU_ISA  // the op, compiled once
#include <torch/library.h>

#include "../fastgan.h"
#include "../args/bias_act.h"
#include "isa.h"

#define FASTGAN_CPU_LOOPS "bias_act.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

at::Tensor bias_act_cpu(const at::Tensor& input, const at::Tensor& bias, c10::string_view activation,
                        double negative_slope) {
  const BiasActTensors t = bias_act_tensors(input, bias);
  const Activation act = activation_from_output_args(activation, negative_slope, "bias_act");
  if (t.out.numel() == 0) return t.out;
  FASTGAN_CPU_LOOP(bias_act_entry)(t.input.scalar_type(), act, t.input.const_data_ptr(), t.bias.const_data_ptr(),
                                   t.out.data_ptr(), t.rows, t.C, negative_slope);
  return t.out;
}

std::tuple<at::Tensor, at::Tensor> bias_act_backward_cpu(const at::Tensor& grad_out, const at::Tensor& output,
                                                         c10::string_view activation, double negative_slope) {
  const BiasActGradTensors t = bias_act_backward_tensors(grad_out, output);
  const Activation act = activation_from_output_args(activation, negative_slope, "bias_act_backward");
  if (t.C == 0) return {t.grad_in, t.grad_bias};
  FASTGAN_CPU_LOOP(bias_act_backward_entry)(t.output.scalar_type(), act, t.grad_out.const_data_ptr(),
                                            t.output.const_data_ptr(), t.grad_in.data_ptr(), t.grad_bias.data_ptr(),
                                            t.rows, t.C, negative_slope);
  return {t.grad_in, t.grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bias_act", &bias_act_cpu);
  m.impl("bias_act_backward", &bias_act_backward_cpu);
}

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)

namespace {

// A Linear layer's bias and activation over rows of C features.
template <Activation ACT, typename scalar_t>
void bias_act_loop(const scalar_t* x, const scalar_t* bias, scalar_t* y, int64_t rows, int64_t C,
                   double negative_slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t slope = acc_t(negative_slope);
  at::parallel_for(0, rows, grain(C), [&, slope](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* xp = x + r * C;
      store_each(y + r * C, C, [&, slope](int64_t c) { return activate_t<ACT>(load(xp[c]) + load(bias[c]), slope); });
    }
  });
}

// Each thread owns a range of columns and walks every row, in blocks of a fixed number of
// rows (partial sums in acc_t, totals in double): a column's sum is added in the same order
// whatever the thread count, and the inner loop runs along contiguous columns. The ranges are
// whole tiles of kColumnTile columns, so two threads never write the same cache line of dx.
constexpr int64_t kColumnTile = 32;

template <Activation ACT, typename scalar_t>
void bias_act_backward_loop(const scalar_t* dy, const scalar_t* y, scalar_t* dx, scalar_t* grad_bias, int64_t rows,
                            int64_t C, double negative_slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t slope = acc_t(negative_slope);
  const int64_t block = std::max<int64_t>(1, kRun * 4 / std::max<int64_t>(C, 1));
  const int64_t tiles = (C + kColumnTile - 1) / kColumnTile;
  // Twice the usual work per task: measured on 64 x 784, splitting this loop over two threads
  // cost more than it saved, where a plain elementwise loop of that size gained.
  at::parallel_for(0, tiles, 2 * grain(rows * kColumnTile), [&, slope](int64_t t0, int64_t t1) {
    const int64_t c0 = t0 * kColumnTile, c1 = std::min(C, t1 * kColumnTile);
    const int64_t width = c1 - c0;
    std::vector<acc_t> part(width);
    std::vector<double> total(width, 0.0);
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      std::fill(part.begin(), part.end(), acc_t(0));
      acc_t* pp = part.data();
      for (int64_t r = r0; r < std::min(rows, r0 + block); ++r) {
        const scalar_t* dp = dy + r * C + c0;
        const scalar_t* yp = y + r * C + c0;
        scalar_t* op = dx + r * C + c0;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          const acc_t gv = load(dp[c]) * activation_grad_from_output_t<ACT>(load(yp[c]), slope);
          op[c] = store<scalar_t>(gv);
          pp[c] += gv;
        }
      }
      for (int64_t c = 0; c < width; ++c) total[c] += double(part[c]);
    }
    for (int64_t c = 0; c < width; ++c) grad_bias[c0 + c] = store<scalar_t>(total[c]);
  });
}

void bias_act_entry(c10::ScalarType dt, Activation act, const void* x, const void* bias, void* y, int64_t rows,
                    int64_t C, double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_bias_act", [&] {
    dispatch_activation(act, [&](auto tag) {
      bias_act_loop<decltype(tag)::value>(static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(bias),
                                          static_cast<scalar_t*>(y), rows, C, slope);
    });
  });
}

void bias_act_backward_entry(c10::ScalarType dt, Activation act, const void* dy, const void* y, void* dx,
                             void* grad_bias, int64_t rows, int64_t C, double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_bias_act_backward", [&] {
    dispatch_activation(act, [&](auto tag) {
      bias_act_backward_loop<decltype(tag)::value>(static_cast<const scalar_t*>(dy), static_cast<const scalar_t*>(y),
                                                   static_cast<scalar_t*>(dx), static_cast<scalar_t*>(grad_bias), rows,
                                                   C, slope);
    });
  });
}

}  // namespace

#endif  // FASTGAN_CPU_ISA
