// The CUDA activation, bias+activation and loss kernels, compiled for the emulation (see cuda_emu.h).
#ifndef FASTGAN_CUDA_EMU
#define FASTGAN_CUDA_EMU 1
#endif
#include "../cuda/elementwise.cu"
