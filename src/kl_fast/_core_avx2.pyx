# The compiled core for CPUs with AVX2 and FMA: the same source as
# _core_baseline, compiled with -mavx2 -mfma (/arch:AVX2 on MSVC); imported
# only when NumPy reports both features (see _kernels.pyx).
include "_core.pxi"
