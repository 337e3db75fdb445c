# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -fno-trapping-math -ffp-contract=off
"""Compiled core built for x86-64-v3 (AVX2); import only where cpu_supports('x86-64-v3')."""

cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #pragma GCC target("arch=x86-64-v3")
    #endif
    """

include "_kernel_core.pxi"
