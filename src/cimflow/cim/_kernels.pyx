# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -fno-trapping-math -ffp-contract=off
"""Compiled core for any CPU (the baseline instruction set); see _kernel_core.pxi."""

include "_kernel_core.pxi"

cdef extern from *:
    """
    static int cim_cpu_supports(const char* level) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        if (!strcmp(level, "x86-64-v3")) return __builtin_cpu_supports("x86-64-v3");
        if (!strcmp(level, "x86-64-v4")) return __builtin_cpu_supports("x86-64-v4");
    #endif
        return 0;
    }
    """
    int cim_cpu_supports(const char* level)


def cpu_supports(level: str) -> bool:
    """Whether this CPU runs code built for an x86-64 micro-architecture level ('x86-64-v3', 'x86-64-v4')."""
    return cim_cpu_supports(level.encode()) != 0
