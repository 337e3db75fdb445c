# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off
"""The int8 model's requantization, one pass over memory each way.

The arithmetic is that of the float64 tensor ops it replaces, element by element, so
results stay bit-identical: the code is round-half-even(float64(x) / float64(s_x)) clamped
to +-qmax (exact in float32); the output is float32(float64(acc) * s[c] + b[c]), with no
fused multiply-add (-ffp-contract=off). Both run in parallel over rows (OpenMP).
"""

from cython.parallel cimport prange
from libc.math cimport nearbyint

ctypedef fused accumulator:
    float
    double


def quantize_codes(const float[::1] x, double scale, double qmax, float[::1] out, int threads):
    """out = clamp(round_half_even(x / scale), -qmax, qmax); NaN stays NaN."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef double q
    if out.shape[0] != n:
        raise ValueError(f"quantize_codes: output holds {out.shape[0]} values, input {n}")
    for i in prange(n, nogil=True, schedule="static", num_threads=threads):
        q = nearbyint(x[i] / scale)
        if q > qmax:
            q = qmax
        elif q < -qmax:
            q = -qmax
        out[i] = <float>q


def dequantize_planes(const accumulator[:, :, ::1] acc, const double[::1] scale, const double[::1] bias,
                      float[:, :, ::1] out, int threads):
    """out[b, c, l] = acc[b, c, l] * scale[c] + bias[c] (channel-major, as convolutions give)."""
    cdef Py_ssize_t b, c, l, batch = acc.shape[0], channels = acc.shape[1], positions = acc.shape[2]
    cdef double s, t
    _check(channels, scale.shape[0], bias.shape[0])
    if out.shape[0] != batch or out.shape[1] != channels or out.shape[2] != positions:
        raise ValueError("dequantize_planes: output shape differs from the accumulator's")
    for b in prange(batch, nogil=True, schedule="static", num_threads=threads):
        for c in range(channels):
            s = scale[c]
            t = bias[c]
            for l in range(positions):
                out[b, c, l] = <float>(acc[b, c, l] * s + t)


def dequantize_rows(const double[:, ::1] acc, const double[::1] scale, const double[::1] bias,
                    float[:, :, ::1] out, int threads):
    """out[b, c, l] = acc[b * L + l, c] * scale[c] + bias[c]: the macro's (rows, columns)
    results dequantized straight into the layer's (B, C, L) output layout."""
    cdef Py_ssize_t b, c, l, batch = out.shape[0], channels = out.shape[1], positions = out.shape[2]
    _check(channels, scale.shape[0], bias.shape[0])
    if acc.shape[0] != batch * positions or acc.shape[1] != channels:
        raise ValueError(f"dequantize_rows: {acc.shape[0]}x{acc.shape[1]} results do not fill a "
                         f"{batch}x{channels}x{positions} output")
    for b in prange(batch, nogil=True, schedule="static", num_threads=threads):
        for l in range(positions):
            for c in range(channels):
                out[b, c, l] = <float>(acc[b * positions + l, c] * scale[c] + bias[c])


cdef _check(Py_ssize_t channels, Py_ssize_t scales, Py_ssize_t biases):
    if scales != channels or biases != channels:
        raise ValueError(f"dequantize: {channels} channels but {scales} scales and {biases} biases")
