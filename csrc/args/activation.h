// The activation op's arguments: the checks its CPU and CUDA ops share (the forward checks
// only its input: check_float_tensor).
#pragma once

#include "../fastgan.h"

namespace fastgan {

inline void check_activation_backward_args(const at::Tensor& grad_out, const at::Tensor& output) {
  check_float_tensor(output, "output");
  check_grad_out(grad_out, output, "output");
}

}  // namespace fastgan
