// The CPU kernels' loops are compiled once per instruction set (for_each_isa.h: baseline
// x86-64 and AVX2 + FMA) and the set is chosen at run time by what the processor has, as
// ATen's CPU_CAPABILITY does: a wheel built on one machine runs on any x86-64 and uses the
// wider vectors where they exist. FASTGAN_CPU_CAPABILITY=default|avx2 picks one by hand (tests
// compare the two).
#pragma once

#include <string>

namespace fastgan {
namespace cpu {

enum class Isa { default_, avx2 };

// The instruction set in use, chosen on first use.
Isa isa();
// For tests and `fastgan info`: the set in use by name, and switching it.
std::string capability();
void set_capability(const std::string& name);

}  // namespace cpu
}  // namespace fastgan

// An entry point of the loops for the instruction set in use, from an op file's loops (the
// part for_each_isa.h compiled per set): FASTGAN_CPU_LOOP(bias_act_entry)(args...).
#define FASTGAN_CPU_LOOP(entry) \
  (::fastgan::cpu::isa() == ::fastgan::cpu::Isa::avx2 ? ::fastgan::cpu::avx2::entry : ::fastgan::cpu::default_::entry)
