// The log-mel kernel for any CPU: 4 frames per group in the baseline 128-bit vectors (SSE2 on
// x86, NEON on ARM).
#define SL_MEL_NS generic
#define SL_MEL_LANES 4
#define SL_MEL_ISA_NAME "generic"
#include "mel_kernel_impl.h"
