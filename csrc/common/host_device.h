// FASTMLP_HD marks small math helpers shared by the CPU kernels and the CUDA kernels.
// They are `static inline`: every translation unit (one per instruction set) keeps
// its own copy, so the linker can never hand AVX-512 code to the generic path.
#pragma once

#if defined(__CUDACC__)
#define FASTMLP_HD __host__ __device__ static inline
#else
#define FASTMLP_HD static inline
#endif
