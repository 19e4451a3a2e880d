// Which CPU kernel table runs: the widest instruction set the processor has, unless
// FASTGAN_CPU_CAPABILITY names one.
#include "kernel_table.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace fastgan {
namespace cpu {
namespace {

bool has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// GCC 12's AVX2 code for the LeakyReLU backward loops runs about 5x slower than its baseline
// code (measured: BN+LeakyReLU backward, 32x128x8x8 NCHW, 1.5 ms against 0.29 ms), while the
// other activations gain; until that is understood, the AVX2 table sends LeakyReLU's backward
// to the baseline loops. tests/test_cpu_capability.py checks both tables either way.
bool avx2_slow(Activation act) { return act == Activation::LeakyReLU; }

void avx2_backward_sums(c10::ScalarType dt, Activation act, const void* dy, const void* x, const Geometry& g,
                        const void* scale, const void* shift, const void* mean, double slope, double* sum_g,
                        double* sum_gx) {
  (avx2_slow(act) ? default_::table() : avx2::table())
      .backward_sums(dt, act, dy, x, g, scale, shift, mean, slope, sum_g, sum_gx);
}

void avx2_backward_input(c10::ScalarType dt, Activation act, const void* dy, const void* x, void* dx,
                         const Geometry& g, const void* scale, const void* shift, const void* mean,
                         const void* k_mean_g, const void* k_x, double slope) {
  (avx2_slow(act) ? default_::table() : avx2::table())
      .backward_input(dt, act, dy, x, dx, g, scale, shift, mean, k_mean_g, k_x, slope);
}

void avx2_activation_backward(c10::ScalarType dt, Activation act, const void* dy, const void* y, void* dx, int64_t n,
                              double slope) {
  (avx2_slow(act) ? default_::table() : avx2::table()).activation_backward(dt, act, dy, y, dx, n, slope);
}

const KernelTable& avx2_table() {
  static const KernelTable t = [] {
    KernelTable k = avx2::table();
    k.backward_sums = &avx2_backward_sums;
    k.backward_input = &avx2_backward_input;
    k.activation_backward = &avx2_activation_backward;
    return k;
  }();
  return t;
}

const KernelTable* by_name(const std::string& name) {
  if (name == "default") return &default_::table();
  if (name == "avx2") {
    TORCH_CHECK_VALUE(has_avx2(), "fastgan: FASTGAN_CPU_CAPABILITY=avx2, but this processor has no AVX2 + FMA");
    return &avx2_table();
  }
  TORCH_CHECK_VALUE(false, "fastgan: unknown CPU capability '", name, "'; expected 'default' or 'avx2'");
}

const KernelTable* choose() {
  if (const char* env = std::getenv("FASTGAN_CPU_CAPABILITY"); env && *env) return by_name(env);
  return has_avx2() ? &avx2_table() : &default_::table();
}

std::atomic<const KernelTable*>& current() {
  static std::atomic<const KernelTable*> table{choose()};
  return table;
}

}  // namespace

const KernelTable& kernels() { return *current().load(std::memory_order_relaxed); }

std::string capability() { return kernels().name; }

void set_capability(const std::string& name) { current().store(by_name(name)); }

}  // namespace cpu
}  // namespace fastgan
