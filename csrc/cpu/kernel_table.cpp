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

const KernelTable* by_name(const std::string& name) {
  if (name == "default") return &default_::table();
  if (name == "avx2") {
    TORCH_CHECK_VALUE(has_avx2(), "fastgan: FASTGAN_CPU_CAPABILITY=avx2, but this processor has no AVX2 + FMA");
    return &avx2::table();
  }
  TORCH_CHECK_VALUE(false, "fastgan: unknown CPU capability '", name, "'; expected 'default' or 'avx2'");
}

const KernelTable* choose() {
  if (const char* env = std::getenv("FASTGAN_CPU_CAPABILITY"); env && *env) return by_name(env);
  return has_avx2() ? &avx2::table() : &default_::table();
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
