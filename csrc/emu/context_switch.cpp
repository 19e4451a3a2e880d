// The x86-64 fiber switch that cuda_emu.cpp's scheduler runs the emulated threads with: a few
// instructions, where ucontext's swapcontext also saves and restores the signal mask with a
// system call at every switch.
#if defined(__x86_64__)
#include "context_switch.h"

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
