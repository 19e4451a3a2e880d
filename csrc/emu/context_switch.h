// The emulation's fiber switch on x86-64 (context_switch.cpp); elsewhere cuda_emu.cpp uses
// ucontext instead.
#pragma once

// switch_context(save, next): saves the callee-saved registers and the floating-point
// control words on the current stack, stores the stack pointer in *save, and resumes the
// context whose stack pointer is `next`. fiber_start is where a new fiber's first switch
// returns to: it calls r13(r12) with a correctly aligned stack.
extern "C" void fastgan_emu_switch(void** save, void* next);
extern "C" void fastgan_emu_fiber_start();
