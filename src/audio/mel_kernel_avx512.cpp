// The log-mel kernel for AVX-512: 16 frames per group in 512-bit registers. Compiled with
// -mavx512f and friends (CMakeLists.txt) and only called when the CPU has them (mel_kernel.cpp).
#if defined(SPEECHLENS_MEL_X86)
#define SL_MEL_NS avx512
#define SL_MEL_LANES 16
#define SL_MEL_ISA_NAME "avx512"
#include "mel_kernel_impl.h"
#endif
