// The CPU kernels compiled for AVX2 + FMA (8 floats per instruction instead of 4). Only the
// functions defined below the target pragma use those instructions; the headers above it,
// and anything of theirs emitted out of line, stay baseline, so nothing here can run on a
// processor without AVX2 unless kernel_table.cpp chose this table.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "convert.h"
#include "kernel_table.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTGAN_HAVE_AVX2_TU 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace fastgan {
namespace cpu {
namespace avx2 {
#define FASTGAN_CPU_ISA_NAME "avx2"
#include "kernels.h"
#undef FASTGAN_CPU_ISA_NAME
}  // namespace avx2
}  // namespace cpu
}  // namespace fastgan

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // another architecture: the baseline table stands in for it
namespace fastgan {
namespace cpu {
namespace avx2 {
const KernelTable& table() { return default_::table(); }
}  // namespace avx2
}  // namespace cpu
}  // namespace fastgan
#endif
