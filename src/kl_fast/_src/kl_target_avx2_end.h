/* Closes the region opened by kl_target_avx2_begin.h. */
#undef KLM_FN
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
