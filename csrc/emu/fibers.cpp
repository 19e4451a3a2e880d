// The emulation's fiber stacks, and the x86-64 switch between fibers: a few instructions, where
// ucontext's swapcontext also saves and restores the signal mask with a system call at every
// switch.
#include "fibers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <c10/util/Exception.h>

namespace fastgan {
namespace emu {

Stack::Stack() {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  bytes = kBytes + page;
  base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TORCH_CHECK(base != MAP_FAILED, "fastgan emu: cannot allocate a fiber stack");
  mprotect(base, page, PROT_NONE);
}

Stack::~Stack() { munmap(base, bytes); }

}  // namespace emu
}  // namespace fastgan

#if defined(__x86_64__)
asm(R"(
  .text
  .p2align 4
  .globl fastgan_emu_switch
  .hidden fastgan_emu_switch
  .type fastgan_emu_switch, @function
fastgan_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fastgan_emu_switch, .-fastgan_emu_switch

  .p2align 4
  .globl fastgan_emu_fiber_start
  .hidden fastgan_emu_fiber_start
  .type fastgan_emu_fiber_start, @function
fastgan_emu_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size fastgan_emu_fiber_start, .-fastgan_emu_fiber_start
)");
#endif
