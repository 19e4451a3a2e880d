// What every CPU loop shares, compiled once per instruction set: for_each_isa.h includes it
// inside each instruction set's namespace, before the op's own loops. Fixed chunk sizes, so
// the work split (and every reduction's order) never depends on the thread count.
//
// No #pragma once: included once per instruction set, by design.

namespace {

// Runs short enough to stay in L1/L2, so the two-pass statistics inside one run cost one
// read from memory. Fixed, so chunking never depends on the thread count.
constexpr int64_t kRun = 4096;

// The loop lambdas capture the activation's slope by value: captured by reference, GCC's
// vectoriser gave up on the LeakyReLU loops (it cannot give a vector type to a float&) and
// ran them as scalar code with a branch per element, 5x slower on random data.

// Below this many elements per task, waking another thread costs more than it saves.
constexpr int64_t kMinTask = 32768;

inline int64_t grain(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinTask / std::max<int64_t>(1, elements_per_item));
}

// Elements per task of a plain elementwise loop.
constexpr int64_t kGrain = 32768;

// Loops live outside the AT_DISPATCH lambdas: a #pragma cannot sit inside a macro argument.
// The entry points (`*_entry`) take void pointers and switch on the dtype and the activation
// once per call, so the op code outside the per-instruction-set namespaces calls them without
// knowing the loops' templates.
#define FASTGAN_CPU_DISPATCH(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

}  // namespace
