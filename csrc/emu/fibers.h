// The emulation's fibers (cuda_emu.cpp runs a block's threads as fibers on one OS thread):
// their stacks, and on x86-64 the switch between them (elsewhere cuda_emu.cpp uses ucontext).
#pragma once

#include <cstddef>

namespace fastgan {
namespace emu {

// One fiber stack with an inaccessible page below it, so an overflow faults at once
// instead of corrupting the neighbouring fiber.
class Stack {
 public:
  Stack();
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  static constexpr size_t kBytes = 256 * 1024;  // usable, above the guard page
  char* top() const { return static_cast<char*>(base) + bytes; }
  char* bottom() const { return top() - kBytes; }

 private:
  void* base = nullptr;  // the guard page
  size_t bytes = 0;
};

}  // namespace emu
}  // namespace fastgan

#if defined(__x86_64__)
// switch_context(save, next): saves the callee-saved registers and the floating-point
// control words on the current stack, stores the stack pointer in *save, and resumes the
// context whose stack pointer is `next`. fiber_start is where a new fiber's first switch
// returns to: it calls r13(r12) with a correctly aligned stack.
extern "C" void fastgan_emu_switch(void** save, void* next);
extern "C" void fastgan_emu_fiber_start();
#endif
