// The CPU kernels' loops behind one table of entry points, compiled once per instruction
// set (kernels_default.cpp: baseline x86-64; kernels_avx2.cpp: AVX2 + FMA) and chosen at
// run time by what the processor has, as ATen's CPU_CAPABILITY does: a wheel built on one
// machine runs on any x86-64 and uses the wider vectors where they exist.
// FASTGAN_CPU_CAPABILITY=default|avx2 picks one by hand (tests compare the two).
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

#include "../activations.h"
#include "../logit_losses.h"

namespace fastgan {
namespace cpu {

struct Geometry {
  int64_t N, C, HW;
  bool channels_last;
  int64_t count() const { return N * HW; }
};

// Pointers are to the tensor's dtype (x, y, dy, dx, grad, loss) or to the accumulation type,
// float (double for double tensors): per-channel statistics and coefficients.
struct KernelTable {
  const char* name;
  void (*stats)(c10::ScalarType, const void* x, const Geometry&, void* mean, void* var);
  void (*apply)(c10::ScalarType, Activation, const void* x, void* y, const Geometry&, const void* scale,
                const void* shift, double slope);
  void (*backward_sums)(c10::ScalarType, Activation, const void* dy, const void* x, const Geometry&,
                        const void* scale, const void* shift, const void* mean, double slope, double* sum_g,
                        double* sum_gx);
  void (*backward_input)(c10::ScalarType, Activation, const void* dy, const void* x, void* dx, const Geometry&,
                         const void* scale, const void* shift, const void* mean, const void* k_mean_g,
                         const void* k_x, double slope);
  void (*activation)(c10::ScalarType, Activation, const void* x, void* y, int64_t n, double slope);
  void (*activation_backward)(c10::ScalarType, Activation, const void* dy, const void* y, void* dx, int64_t n,
                              double slope);
  // Rows of C features: y = act(x + bias); and its backward, dx = dy * act'(y) with
  // grad_bias = the column sums of dx (the tensors' dtype), from one pass.
  void (*bias_act)(c10::ScalarType, Activation, const void* x, const void* bias, void* y, int64_t rows, int64_t C,
                   double slope);
  void (*bias_act_backward)(c10::ScalarType, Activation, const void* dy, const void* y, void* dx, void* grad_bias,
                            int64_t rows, int64_t C, double slope);
  // Writes the gradient (scaled for the mean) and, for reduction None, the loss per element;
  // returns the reduced loss otherwise. target may be null (target_value for every element).
  double (*loss)(c10::ScalarType, LossKind, const void* x, const void* target, double target_value, void* grad,
                 void* loss, int64_t n, Reduction);
};

namespace default_ { const KernelTable& table(); }
namespace avx2 { const KernelTable& table(); }

// The table for this processor (or FASTGAN_CPU_CAPABILITY), chosen on first use.
const KernelTable& kernels();
// For tests and `python -m fastgan info`: the table in use, and switching it.
std::string capability();
void set_capability(const std::string& name);

}  // namespace cpu
}  // namespace fastgan
