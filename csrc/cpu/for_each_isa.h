// Compiles an op file's loops once per instruction set. The op file (cpu/<op>.cpp) defines
// FASTGAN_CPU_LOOPS as its own name and includes this header; this header includes the file
// again inside namespace fastgan::cpu::default_ and then inside fastgan::cpu::avx2 with the
// compiler told it may use AVX2 + FMA there (8 floats per instruction instead of 4), each time
// with FASTGAN_CPU_ISA defined, which selects the file's loop part. The op part calls the loops
// through FASTGAN_CPU_LOOP (isa.h). The pattern is Highway's foreach_target.h.
//
// Only functions defined inside the target region use AVX2; the headers included above it,
// and anything of theirs emitted out of line, stay baseline, so nothing here runs on a
// processor without AVX2 unless isa.cpp chose that set.
//
// No include guard: included once per op file, by design.
#ifndef FASTGAN_CPU_LOOPS
#error "define FASTGAN_CPU_LOOPS as the including file's name before including for_each_isa.h"
#endif

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../fastgan.h"
#include "convert.h"
#include "isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>  // declares the AVX2 intrinsics for the avx2 region (loop_support.h's store_row)
#endif

#define FASTGAN_CPU_ISA default_
#define FASTGAN_CPU_ISA_IS_AVX2 0
namespace fastgan {
namespace cpu {
namespace default_ {
#include "loop_support.h"
#include FASTGAN_CPU_LOOPS
}  // namespace default_
}  // namespace cpu
}  // namespace fastgan
#undef FASTGAN_CPU_ISA
#undef FASTGAN_CPU_ISA_IS_AVX2

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define FASTGAN_CPU_ISA avx2
#define FASTGAN_CPU_ISA_IS_AVX2 1
namespace fastgan {
namespace cpu {
namespace avx2 {
#include "loop_support.h"
#include FASTGAN_CPU_LOOPS
}  // namespace avx2
}  // namespace cpu
}  // namespace fastgan
#undef FASTGAN_CPU_ISA
#undef FASTGAN_CPU_ISA_IS_AVX2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // another architecture: isa.cpp never chooses avx2 there; the name must still resolve
namespace fastgan {
namespace cpu {
namespace avx2 = default_;
}  // namespace cpu
}  // namespace fastgan
#endif

#undef FASTGAN_CPU_LOOPS
