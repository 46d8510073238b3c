/* Opens a region compiled for AVX2+FMA whose functions get the _avx2 suffix.
   Include the per-target implementation after it, then kl_target_avx2_end.h.
   No include guard: used once per implementation file. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define KLM_FN(name) name##_avx2
