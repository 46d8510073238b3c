# The compiled core for CPUs with AVX-512 (F, CD, DQ, BW and VL) besides AVX2 and
# FMA: the same source as _core_baseline, compiled with those flags and 512-bit
# vectors (/arch:AVX512 on MSVC); imported only when NumPy reports every one of
# those features (see _kernels.pyx).
include "_core.pxi"
