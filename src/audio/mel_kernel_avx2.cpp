// The log-mel kernel for AVX2 + FMA: 8 frames per group in 256-bit registers. Compiled with
// -mavx2 -mfma (CMakeLists.txt) and only called when the CPU has both (mel_kernel.cpp).
#if defined(SPEECHLENS_MEL_X86)
#define SL_MEL_NS avx2
#define SL_MEL_LANES 8
#define SL_MEL_ISA_NAME "avx2"
#include "mel_kernel_impl.h"
#endif
