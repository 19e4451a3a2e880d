// The type fastgan accumulates a tensor's values in, on the CPU and in CUDA kernels alike:
// float for float, half and bfloat16; double for double. (stats_dtype() in fastgan.h is its
// run-time twin: the dtype of per-channel statistics.)
#pragma once

#include <type_traits>

namespace fastgan {

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;

}  // namespace fastgan
