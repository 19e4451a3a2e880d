// Which instruction set's loops run: the widest the processor has, unless
// FASTGAN_CPU_CAPABILITY names one.
#include "isa.h"

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

Isa by_name(const std::string& name) {
  if (name == "default") return Isa::default_;
  if (name == "avx2") {
    TORCH_CHECK_VALUE(has_avx2(), "fastgan: FASTGAN_CPU_CAPABILITY=avx2, but this processor has no AVX2 + FMA");
    return Isa::avx2;
  }
  TORCH_CHECK_VALUE(false, "fastgan: unknown CPU capability '", name, "'; expected 'default' or 'avx2'");
}

Isa choose() {
  if (const char* env = std::getenv("FASTGAN_CPU_CAPABILITY"); env && *env) return by_name(env);
  return has_avx2() ? Isa::avx2 : Isa::default_;
}

std::atomic<Isa>& current() {
  static std::atomic<Isa> set{choose()};
  return set;
}

}  // namespace

Isa isa() { return current().load(std::memory_order_relaxed); }

std::string capability() { return isa() == Isa::avx2 ? "avx2" : "default"; }

void set_capability(const std::string& name) { current().store(by_name(name)); }

}  // namespace cpu
}  // namespace fastgan
