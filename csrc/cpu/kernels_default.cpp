// The CPU kernels for any x86-64 (or other) processor: the compiler's baseline instructions.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "convert.h"
#include "kernel_table.h"

namespace fastgan {
namespace cpu {
namespace default_ {
#define FASTGAN_CPU_ISA_NAME "default"
#include "kernels.h"
#undef FASTGAN_CPU_ISA_NAME
}  // namespace default_
}  // namespace cpu
}  // namespace fastgan
