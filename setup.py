"""Build the compiled kernels of kl_fast.

Compiler directives are set once here.  ``KL_FAST_DEBUG=1`` turns bounds checks,
wraparound and initialisation checks back on for debugging.  OpenMP is found by a
probe at build time; without it the build warns and the kernels run serially.
"""
import glob
import os
import platform
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("KL_FAST_DEBUG", "0") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
    "cpow": True,
}

# Optimisation without value-changing flags: no -ffast-math, no -march=native.
# -Wno-psabi: the 32-byte vector helpers are static and inlined, so no call
# ever passes them across the baseline/AVX ABI boundary GCC warns about.
# -g0 after Python's own -g: the installed modules carry no debug info (2.8 MB -> 0.6 MB each).
BASE_CFLAGS = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function",
               "-Wno-psabi"]

# gcc on x86 zeroes a few hundred bytes of known size (a kernel's lanes, gk_q_zero)
# with `rep stosq`, whose start-up costs more than a short block's work (a KL
# surface, one thread: 11.1 -> 10.6 us a point); vector stores instead, and
# glibc's memset beyond 1 KiB.  Probed: other compilers and targets do without.
MEMSET_CFLAGS = ["-mmemset-strategy=vector_loop:1024:noalign,libcall:-1:noalign"]

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
    }
    """
)


# Compiled (not run: the build machine may lack the CPU) with each target's flags,
# so a compiler or assembler too old for them leaves that build out instead of
# failing the install.
TARGET_PROBE = textwrap.dedent(
    """
    #include <immintrin.h>
    int main(void) {
    #if defined(__AVX512F__)
        __m512d v = _mm512_set1_pd(1.0);
        v = _mm512_fmadd_pd(v, v, v);
        return _mm512_reduce_add_pd(v) == 16.0 ? 0 : 1;
    #else
        __m256d v = _mm256_set1_pd(1.0);
        v = _mm256_fmadd_pd(v, v, v);
        return _mm256_cvtsd_f64(v) == 2.0 ? 0 : 1;
    #endif
    }
    """
)


def _compiles(compiler, source, flags):
    """True when `source` compiles with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(source)
        try:
            compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        except Exception:  # any compiler or assembler failure means "no"
            return False
    return True


def _compiler_is_msvc(compiler):
    return getattr(compiler, "compiler_type", "") == "msvc"


def _probe_openmp(compiler):
    """Return (compile_args, link_args) for OpenMP, or None when it does not work."""
    if _compiler_is_msvc(compiler):
        return ["/openmp"], []
    flags = (["-fopenmp"], ["-fopenmp"])
    if sys.platform == "darwin":
        flags = (["-Xpreprocessor", "-fopenmp"], ["-lomp"])
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(OPENMP_PROBE)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags[0])
            compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags[1])
        except Exception:  # any compiler or linker failure means "no OpenMP"
            return None
    return flags


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # the extensions compile in parallel (pip install . runs build_ext without -j)
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        omp = None
        if os.environ.get("KL_FAST_NO_OPENMP", "0") in ("", "0"):
            omp = _probe_openmp(self.compiler)
        if omp is None:
            warnings.warn(
                "kl_fast: OpenMP not available; the kernels are built serial "
                "(kl_fast.openmp_enabled() will return False)."
            )
        msvc = _compiler_is_msvc(self.compiler)
        memset = [] if msvc or not _compiles(self.compiler, "int main(void) { return 0; }\n",
                                             MEMSET_CFLAGS + ["-Werror"]) else MEMSET_CFLAGS
        for ext in list(self.extensions):
            flags = TARGET_FLAGS[TARGETS[ext.name]][1 if msvc else 0] if ext.name in TARGETS else None
            if flags is not None and not _compiles(self.compiler, TARGET_PROBE, flags):
                warnings.warn(f"kl_fast: the compiler does not take {' '.join(flags)}; "
                              f"{ext.name} is left out (its CPUs run another build)")
                self.extensions.remove(ext)
        for ext in self.extensions:
            if not msvc:
                ext.extra_compile_args = BASE_CFLAGS + memset + list(ext.extra_compile_args)
            if ext.name in TARGETS:
                gnu, msvc_flags = TARGET_FLAGS[TARGETS[ext.name]]
                ext.extra_compile_args += msvc_flags if msvc else gnu
            if omp is not None:
                ext.extra_compile_args += omp[0]
                ext.extra_link_args += omp[1]
                ext.define_macros.append(("KL_FAST_OPENMP", "1"))
        super().build_extensions()


def make_ext(name, sources):
    return Extension(
        name,
        sources,
        include_dirs=[np.get_include(), os.path.join("src", "kl_fast", "_src")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=[os.path.join("src", "kl_fast", "_src", f)
                 for f in os.listdir(os.path.join("src", "kl_fast", "_src"))]
        + sorted(glob.glob(os.path.join("src", "kl_fast", "_core*.pxi"))),
    )


# The compiled core, once per instruction-set target from the same source
# (_core.pxi): the baseline everywhere; on x86-64 also AVX2+FMA and AVX-512
# (F, CD, DQ, BW, VL: the Skylake-server set), the best one the CPU has chosen at
# import.  AVX-512 builds use 512-bit vectors: measured 1.1-2x the AVX2 build's
# speed on float64 (docs/core.md).  KL_FAST_NO_AVX2=1 builds only the baseline,
# KL_FAST_NO_AVX512=1 leaves out AVX-512.
TARGET_FLAGS = {  # target -> (gcc/clang flags, MSVC flags)
    "avx2": (["-mavx2", "-mfma"], ["/arch:AVX2"]),
    "avx512": (["-mavx2", "-mfma", "-mavx512f", "-mavx512cd", "-mavx512dq", "-mavx512bw",
                "-mavx512vl", "-mprefer-vector-width=512"], ["/arch:AVX512"]),
}
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
CORE = [make_ext("kl_fast._core_baseline", ["src/kl_fast/_core_baseline.pyx"])]
TARGETS = {}  # extension name -> instruction-set target (flags in TARGET_FLAGS)


def _wanted(switch):
    return os.environ.get(switch, "0") in ("", "0")


if X86_64 and _wanted("KL_FAST_NO_AVX2"):
    CORE.append(make_ext("kl_fast._core_avx2", ["src/kl_fast/_core_avx2.pyx"]))
    TARGETS["kl_fast._core_avx2"] = "avx2"
    if _wanted("KL_FAST_NO_AVX512"):
        CORE.append(make_ext("kl_fast._core_avx512", ["src/kl_fast/_core_avx512.pyx"]))
        TARGETS["kl_fast._core_avx512"] = "avx512"

EXTENSIONS = CORE + [
    make_ext("kl_fast._kernels", ["src/kl_fast/_kernels.pyx"]),
    make_ext("kl_fast._div_kernels", ["src/kl_fast/_div_kernels.pyx"]),
    make_ext("kl_fast._gaussian", ["src/kl_fast/_gaussian.pyx"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives=DIRECTIVES,
        include_path=["src"],
    ),
    cmdclass={"build_ext": BuildExt},
)
