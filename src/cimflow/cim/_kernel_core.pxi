# Shared source of the compiled kernels, included by _kernels.pyx (baseline x86-64 or any
# other architecture) and by _kernels_x86_64_v3.pyx / _kernels_x86_64_v4.pyx, which compile
# the same code for AVX2 and AVX-512; kernels.py picks the best one the CPU runs.
#
# ``simulate`` runs one layer call in one OpenMP parallel region. Each thread takes whole
# blocks of input vectors (dynamic schedule, no other synchronisation) and runs them start
# to end while they sit in its cache: int8 -> float32 packing with input-ones counting, one
# BLAS sgemm per row segment (called from the thread, so it runs sequentially), then the
# per-conversion model of cimflow.cim.conversion: analog accumulation on the hold capacitor
# (if on), compression, bias DAC, noise, sign-first SAR with ReLU early stop, INL,
# correction lookup, digital accumulation of the conversion steps and the sign-only count.
# ``partial_sums`` stops after the sgemm, for the numpy reference.
#
# The conversion matches cimflow.cim.reference.convert bit for bit: float32 in the same
# order with no fused multiply-add (-ffp-contract=off), and noise from the same
# counter-based stream (cimflow.cim.noise). It works on chunks of ~1024 conversions of one
# segment, with the per-column settings tiled to the chunk's length, so every loop runs
# flat over contiguous memory: noise draws (one hash per four draws), the analog transfer
# and SAR (branch-free float32, vectorised by the compiler; -fno-trapping-math lets it
# if-convert), then correction lookup and accumulation.


from cython.parallel cimport parallel, prange
from libc.math cimport fabsf
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

cimport openmp

cdef extern from *:
    """
    static inline uint64_t cim_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    static const uint64_t CIM_GOLDEN_GAMMA = 0x9E3779B97F4A7C15ULL;

    /* Scalar on purpose: vector gathers are slower than plain loads on CPUs with the
       Gather Data Sampling mitigation (AVX-512 gathers measured 0.64 vs 0.40 ns here). */
    #if defined(__GNUC__) && !defined(__clang__)
    __attribute__((optimize("no-tree-vectorize")))
    #endif
    static void cim_lookup(float* out, Py_ssize_t count, const float* table,
                           const int32_t* code_zero, const int32_t* signed_code) {
        for (Py_ssize_t i = 0; i < count; i++) out[i] = table[code_zero[i] + signed_code[i]];
    }
    """
    uint64_t cim_mix64(uint64_t z) nogil
    const uint64_t CIM_GOLDEN_GAMMA
    void cim_lookup(float* out, Py_ssize_t count, const float* table,
                    const int32_t* code_zero, const int32_t* signed_code) nogil


# Per-column settings repeated over one chunk: element i is column i % M.
cdef struct Tiled:
    float* post_gain
    float* offset
    float* sign_threshold
    float* bias
    float* inl_c0
    float* inl_c1
    int32_t* inl_row  # index of the column ADC's row in the flat measured INL table
    int32_t* code_zero  # index of the column ADC's code-0 entry in the flat correction table


cdef enum:
    CHUNK_CONVERSIONS = 1024


cdef inline void _noise(
    float* noise, Py_ssize_t count, uint64_t first, uint64_t key, const float* table, float sigma
) noexcept nogil:
    """sigma * draws first .. first+count-1 of the stream ``key`` (see noise.py).

    Draw n is lane n % 4 of hash n // 4; whole groups of four share one hash.
    """
    cdef Py_ssize_t i = 0
    cdef uint64_t n, h
    while i < count and (first + i) & 3:
        n = first + i
        h = cim_mix64(key + ((n >> 2) + 1) * CIM_GOLDEN_GAMMA)
        noise[i] = sigma * table[(h >> ((n & 3) * 16)) & 0xFFFF]
        i += 1
    while i + 4 <= count:
        h = cim_mix64(key + (((first + i) >> 2) + 1) * CIM_GOLDEN_GAMMA)
        noise[i] = sigma * table[h & 0xFFFF]
        noise[i + 1] = sigma * table[(h >> 16) & 0xFFFF]
        noise[i + 2] = sigma * table[(h >> 32) & 0xFFFF]
        noise[i + 3] = sigma * table[h >> 48]
        i += 4
    while i < count:
        n = first + i
        h = cim_mix64(key + ((n >> 2) + 1) * CIM_GOLDEN_GAMMA)
        noise[i] = sigma * table[(h >> ((n & 3) * 16)) & 0xFFFF]
        i += 1


cdef inline void _transfer(
    const float* analog, const float* noise, Py_ssize_t count, const Tiled* c,
    float pre_scale, float compression, float inv_levels, float max_code,
    int32_t* signed_code, int32_t* positive, const float* inl_table,
) noexcept nogil:
    """ADC input, sign decision and INL-bent magnitude code (branch-free, vectorisable).

    ``inl_table``: flat (adcs, levels + 1) measured INL, linear between codes; NULL for
    the modeled curve."""
    cdef const float* post_gain = c.post_gain
    cdef const float* offset = c.offset
    cdef const float* sign_threshold = c.sign_threshold
    cdef const float* bias = c.bias
    cdef const float* inl_c0 = c.inl_c0
    cdef const float* inl_c1 = c.inl_c1
    cdef float zero = 0.0, one = 1.0, half = 0.5
    cdef float u, x, mag, y, r
    cdef int32_t code, pos
    cdef Py_ssize_t i
    if inl_table != NULL:
        _transfer_measured(analog, noise, count, c, pre_scale, compression, max_code, signed_code, positive,
                           inl_table)
        return
    for i in range(count):
        u = analog[i] * pre_scale
        u = u / (one + compression * fabsf(u))
        x = u * post_gain[i] + offset[i]
        x = x + bias[i]
        x = x + noise[i]
        pos = (x + sign_threshold[i]) >= zero
        mag = x if pos else -x
        y = mag * inv_levels
        y = y if y > zero else zero
        y = y if y < one else one
        r = mag + y * (one - y) * (inl_c0[i] + inl_c1[i] * y) + half
        r = r if r > zero else zero
        r = r if r < max_code else max_code
        code = <int32_t>r
        signed_code[i] = code if pos else -code
        positive[i] = pos


cdef void _transfer_measured(
    const float* analog, const float* noise, Py_ssize_t count, const Tiled* c,
    float pre_scale, float compression, float max_code,
    int32_t* signed_code, int32_t* positive, const float* inl_table,
) noexcept nogil:
    """:func:`_transfer` with a measured INL table (a gather per conversion, not vectorised)."""
    cdef float zero = 0.0, one = 1.0, half = 0.5
    cdef float u, x, mag, r, t, f, low, high
    cdef int32_t code, pos, index
    cdef int32_t levels = <int32_t>max_code + 1
    cdef float top = <float>levels
    cdef Py_ssize_t i
    for i in range(count):
        u = analog[i] * pre_scale
        u = u / (one + compression * fabsf(u))
        x = u * c.post_gain[i] + c.offset[i]
        x = x + c.bias[i]
        x = x + noise[i]
        pos = (x + c.sign_threshold[i]) >= zero
        mag = x if pos else -x
        t = mag if mag > zero else zero
        t = t if t < top else top
        index = <int32_t>t
        index = index if index < levels - 1 else levels - 1
        f = t - <float>index
        low = inl_table[c.inl_row[i] + index]
        high = inl_table[c.inl_row[i] + index + 1]
        r = mag + (low + f * (high - low)) + half
        r = r if r > zero else zero
        r = r if r < max_code else max_code
        code = <int32_t>r
        signed_code[i] = code if pos else -code
        positive[i] = pos


cdef inline void _accumulate_signed(
    double* acc, Py_ssize_t count, const int32_t* signed_code, const uint8_t* live,
    const int32_t* code_zero, const float* correction, float* corrected, double lsb,
) noexcept nogil:
    """Add each live conversion's value (corrected if a table is given) times ``lsb`` to ``acc``."""
    cdef Py_ssize_t i
    cdef float zero = 0.0
    if correction != NULL:
        cim_lookup(corrected, count, correction, code_zero, signed_code)
        for i in range(count):
            acc[i] += <double>(corrected[i] if live[i] else zero) * lsb
    else:
        for i in range(count):
            acc[i] += <double>(<float>signed_code[i] if live[i] else zero) * lsb


cdef inline int64_t _accumulate_fused(
    double* acc, Py_ssize_t count, const int32_t* signed_code, const int32_t* positive,
    const uint8_t* live, const int32_t* code_zero, const float* correction, float* corrected,
    double lsb,
) noexcept nogil:
    """Fused ReLU: add positive live conversions, clipped at 0; return the sign-only count."""
    cdef Py_ssize_t i
    cdef float value, zero = 0.0
    cdef int64_t sign_only = 0
    for i in range(count):
        sign_only += live[i] & (1 - positive[i])
    if correction != NULL:
        cim_lookup(corrected, count, correction, code_zero, signed_code)
        for i in range(count):
            value = corrected[i] if corrected[i] > zero else zero
            acc[i] += <double>(value if live[i] & positive[i] else zero) * lsb
    else:
        for i in range(count):
            acc[i] += <double>(<float>signed_code[i] if live[i] & positive[i] else zero) * lsb
    return sign_only


cdef Tiled _tile(
    Py_ssize_t span, Py_ssize_t columns, const float* post_gain, const float* offset,
    const float* sign_threshold, const float* bias, const float* inl_c0, const float* inl_c1,
    const int32_t* adc_of_column, Py_ssize_t table_stride, int max_code,
) noexcept nogil:
    """Per-column settings repeated over ``span`` conversions (element i is column i % columns)."""
    cdef Tiled c
    cdef Py_ssize_t i, m
    c.post_gain = <float*>malloc(span * sizeof(float))
    c.offset = <float*>malloc(span * sizeof(float))
    c.sign_threshold = <float*>malloc(span * sizeof(float))
    c.bias = <float*>malloc(span * sizeof(float))
    c.inl_c0 = <float*>malloc(span * sizeof(float))
    c.inl_c1 = <float*>malloc(span * sizeof(float))
    c.code_zero = <int32_t*>malloc(span * sizeof(int32_t))
    c.inl_row = <int32_t*>malloc(span * sizeof(int32_t))
    for i in range(span):
        m = i % columns
        c.post_gain[i] = post_gain[m]
        c.offset[i] = offset[m]
        c.sign_threshold[i] = sign_threshold[m]
        c.bias[i] = bias[m]
        c.inl_c0[i] = inl_c0[m]
        c.inl_c1[i] = inl_c1[m]
        c.code_zero[i] = <int32_t>(adc_of_column[m] * table_stride + max_code)
        c.inl_row[i] = <int32_t>(adc_of_column[m] * (max_code + 2))
    return c


cdef void _free_tiled(Tiled* c) noexcept nogil:
    free(c.post_gain)
    free(c.offset)
    free(c.sign_threshold)
    free(c.bias)
    free(c.inl_c0)
    free(c.inl_c1)
    free(c.code_zero)
    free(c.inl_row)


# A convolution's input vectors, gathered from the int8 (N, C, H, W) images on demand.
cdef struct ConvGeometry:
    const int8_t* images
    Py_ssize_t channels, height, width, kernel_h, kernel_w, stride_h, stride_w
    Py_ssize_t pad_h, pad_w, dilation_h, dilation_w, out_h, out_w


cdef ConvGeometry _geometry(const int8_t[:, :, :, ::1] images, const Py_ssize_t[::1] g) except *:
    """Geometry from (kh, kw, sh, sw, ph, pw, dh, dw); the output size follows from the images."""
    cdef ConvGeometry c
    if g.shape[0] != 8:
        raise ValueError("conv geometry is (kh, kw, sh, sw, ph, pw, dh, dw)")
    c.images = &images[0, 0, 0, 0] if images.shape[0] > 0 else NULL
    c.channels, c.height, c.width = images.shape[1], images.shape[2], images.shape[3]
    c.kernel_h, c.kernel_w, c.stride_h, c.stride_w = g[0], g[1], g[2], g[3]
    c.pad_h, c.pad_w, c.dilation_h, c.dilation_w = g[4], g[5], g[6], g[7]
    c.out_h = (c.height + 2 * c.pad_h - c.dilation_h * (c.kernel_h - 1) - 1) // c.stride_h + 1
    c.out_w = (c.width + 2 * c.pad_w - c.dilation_w * (c.kernel_w - 1) - 1) // c.stride_w + 1
    return c


cdef void _gather_rows(const ConvGeometry* g, Py_ssize_t first, Py_ssize_t rows, int8_t* out) noexcept nogil:
    """Input vectors first .. first+rows-1 (row = (n, ho, wo), columns (c, i, j)) into ``out``.

    A window wholly inside the image is plain strided copies; an edge window checks each
    tap and reads zero padding outside."""
    cdef Py_ssize_t k = g.channels * g.kernel_h * g.kernel_w, plane = g.height * g.width
    cdef Py_ssize_t positions = g.out_h * g.out_w
    cdef Py_ssize_t r, index, n, ho, wo, c, i, j, y, x, y0, x0, col
    cdef int8_t* row
    cdef const int8_t* image
    cdef const int8_t* src
    cdef bint inside
    for r in range(rows):
        index = first + r
        n = index // positions
        ho = (index % positions) // g.out_w
        wo = index % g.out_w
        y0 = ho * g.stride_h - g.pad_h
        x0 = wo * g.stride_w - g.pad_w
        row = out + r * k
        image = g.images + n * g.channels * plane
        inside = (y0 >= 0 and y0 + g.dilation_h * (g.kernel_h - 1) < g.height
                  and x0 >= 0 and x0 + g.dilation_w * (g.kernel_w - 1) < g.width)
        col = 0
        if inside:
            for c in range(g.channels):
                for i in range(g.kernel_h):
                    src = image + c * plane + (y0 + i * g.dilation_h) * g.width + x0
                    for j in range(g.kernel_w):
                        row[col + j] = src[j * g.dilation_w]
                    col = col + g.kernel_w
        else:
            for c in range(g.channels):
                for i in range(g.kernel_h):
                    y = y0 + i * g.dilation_h
                    for j in range(g.kernel_w):
                        x = x0 + j * g.dilation_w
                        row[col] = image[c * plane + y * g.width + x] if 0 <= y < g.height and 0 <= x < g.width else 0
                        col = col + 1


def im2col(const int8_t[:, :, :, ::1] images, const Py_ssize_t[::1] geometry, int8_t[:, ::1] out):
    """Input vectors of a convolution: int8 (N, C, H, W) -> ``out`` (N*Ho*Wo, C*kh*kw).

    ``geometry`` is (kh, kw, sh, sw, ph, pw, dh, dw). Row (n, ho, wo) holds the window of
    output pixel (ho, wo) in (c, i, j) order (a (M, C, kh, kw) weight tensor flattened),
    zero outside the image. Images are split over the threads.
    """
    cdef ConvGeometry g = _geometry(images, geometry)
    cdef Py_ssize_t positions = g.out_h * g.out_w, k = g.channels * g.kernel_h * g.kernel_w
    if out.shape[0] != images.shape[0] * positions or out.shape[1] != k:
        raise ValueError(f"im2col output must be ({images.shape[0] * positions}, {k}); got {out.shape}")
    if out.shape[0] == 0:
        return
    cdef Py_ssize_t n
    with nogil:
        for n in prange(images.shape[0], schedule="static"):
            _gather_rows(&g, n * positions, positions, &out[n * positions, 0])


# BLAS sgemm, Fortran interface (column-major), as exported by MKL and scipy's OpenBLAS.
ctypedef void (*sgemm_t)(
    const char* transa, const char* transb, const int* m, const int* n, const int* k,
    const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
    const float* beta, float* c, const int* ldc,
) noexcept nogil

cdef extern from "stdlib.h":
    void* aligned_alloc(size_t alignment, size_t size) nogil


cdef inline void* _aligned(size_t size) noexcept nogil:
    """64-byte aligned block: the same alignment on every call keeps sgemm reproducible."""
    return aligned_alloc(64, ((size + 63) // 64) * 64)


cdef enum:
    ROWS_PER_BYTE_COUNT = 31  # 31 rows * 8 ones fit a uint8 counter


cdef inline uint32_t _ones(uint8_t v) noexcept nogil:
    """Bits set in a byte, branch-free so the loop around it vectorises."""
    v = v - ((v >> 1) & 0x55)
    v = (v & 0x33) + ((v >> 2) & 0x33)
    return (v + (v >> 4)) & 0x0F


cdef void _pack_rows(
    const int8_t* codes, Py_ssize_t rows, Py_ssize_t width, float* values, uint32_t* ones,
    uint8_t* group_ones,
) noexcept nogil:
    """float32 copy of int8 rows; adds each input row k's ones to ``ones`` (uint8 per 31 rows)."""
    cdef Py_ssize_t group, start, b, k
    cdef const uint8_t* src
    cdef float* dst
    for group in range((rows + ROWS_PER_BYTE_COUNT - 1) // ROWS_PER_BYTE_COUNT):
        start = group * ROWS_PER_BYTE_COUNT
        for k in range(width):
            group_ones[k] = 0
        for b in range(start, min(rows, start + ROWS_PER_BYTE_COUNT)):
            src = <const uint8_t*>(codes + b * width)
            dst = values + b * width
            for k in range(width):
                dst[k] = <float>(<int8_t>src[k])
                group_ones[k] += _ones(src[k])
        for k in range(width):
            ones[k] += group_ones[k]


cdef void _gemm_segments(
    sgemm_t gemm, const float* x, int rows, int width, const float* weights, int columns,
    const int32_t* bounds, const uint8_t* segment_live, Py_ssize_t segments, float* analog,
) noexcept nogil:
    """(S, rows, M) partial sums of row-major x (rows, K) and weights (K, M), one sgemm per segment.

    Row-major C = X W is column-major C^T = W^T X^T, so W goes first. Empty segments are 0.
    """
    cdef char no_transpose = b"N"
    cdef float one = 1.0, zero = 0.0
    cdef int depth
    cdef Py_ssize_t s, i
    cdef float* out
    for s in range(segments):
        out = analog + s * rows * columns
        if segment_live[s]:
            depth = bounds[2 * s + 1] - bounds[2 * s]
            gemm(
                &no_transpose, &no_transpose, &columns, &rows, &depth, &one,
                weights + bounds[2 * s] * columns, &columns, x + bounds[2 * s], &width,
                &zero, out, &columns,
            )
        else:
            for i in range(rows * columns):
                out[i] = 0.0


# What one call converts and how: built once, read by every thread.
cdef struct Conversion:
    Tiled tiled
    const uint8_t* live  # (steps, span) converted flags tiled like the settings
    const float* pre_scale  # (steps,) analog sum -> normalised node voltage
    const double* lsb  # (steps,) one code in integer-product units
    const float* correction  # flat (adcs, 2*max_code+1) table, or NULL for raw codes
    const float* inl_table  # flat (adcs, max_code+2) measured INL, or NULL for the modeled curve
    const float* normal_table
    Py_ssize_t columns
    Py_ssize_t segments
    Py_ssize_t steps  # conversions per output: segments (digital) or 1 (analog accumulation)
    Py_ssize_t chunk_rows
    Py_ssize_t total_vectors
    float hold_keep
    float compression
    float inv_levels
    float max_code
    float noise_sigma
    uint64_t noise_key
    bint analog
    bint fused
    bint digital_relu


cdef inline void _hold(
    float* held, const float* analog, Py_ssize_t segments, Py_ssize_t stride, Py_ssize_t count, float keep,
) noexcept nogil:
    """Analog accumulation: held = (..(p_0 keep + p_1) keep + ..) + p_{S-1}, as reference.hold."""
    cdef Py_ssize_t s, i
    cdef const float* part
    for i in range(count):
        held[i] = analog[i]
    for s in range(1, segments):
        part = analog + s * stride
        for i in range(count):
            held[i] = held[i] * keep + part[i]


cdef int64_t _convert_block(
    const Conversion* cv, const float* analog, Py_ssize_t rows, Py_ssize_t first_vector, double* out,
    float* noise, int32_t* signed_code, int32_t* positive, float* corrected, float* held,
) noexcept nogil:
    """Convert (S, rows, M) partial sums of vectors first_vector.. into ``out`` (rows, M).

    Conversion (s, b, m) of the call (s: conversion step) uses noise draw
    (s * total_vectors + b) * M + m, so results do not depend on blocks or threads. The
    last five arguments are the thread's chunk-sized scratch buffers; ``noise`` must hold
    zeros when the call has no noise. Returns the sign-only count.
    """
    cdef Py_ssize_t columns = cv.columns, span = cv.chunk_rows * cv.columns
    cdef Py_ssize_t chunk, first, count, s, i
    cdef int64_t sign_only = 0
    cdef double* acc
    cdef const float* values
    for chunk in range((rows + cv.chunk_rows - 1) // cv.chunk_rows):
        first = chunk * cv.chunk_rows
        count = min(cv.chunk_rows, rows - first) * columns
        acc = out + first * columns
        for i in range(count):
            acc[i] = 0.0
        for s in range(cv.steps):
            if cv.analog and cv.segments > 1:
                _hold(held, analog + first * columns, cv.segments, rows * columns, count, cv.hold_keep)
                values = held
            else:
                values = analog + (s * rows + first) * columns
            if cv.noise_sigma > 0:
                _noise(
                    noise, count, <uint64_t>((s * cv.total_vectors + first_vector + first) * columns),
                    cv.noise_key, cv.normal_table, cv.noise_sigma,
                )
            _transfer(
                values, noise, count, &cv.tiled,
                cv.pre_scale[s], cv.compression, cv.inv_levels, cv.max_code, signed_code, positive,
                cv.inl_table,
            )
            if cv.fused:
                sign_only += _accumulate_fused(
                    acc, count, signed_code, positive, cv.live + s * span, cv.tiled.code_zero,
                    cv.correction, corrected, cv.lsb[s],
                )
            else:
                _accumulate_signed(
                    acc, count, signed_code, cv.live + s * span, cv.tiled.code_zero, cv.correction,
                    corrected, cv.lsb[s],
                )
        if cv.digital_relu:
            for i in range(count):
                acc[i] = 0.0 if acc[i] < 0.0 else acc[i]
    return sign_only


cdef uint8_t* _segment_live(const uint8_t[:, ::1] active):
    cdef uint8_t* live = <uint8_t*>calloc(active.shape[0], 1)
    cdef Py_ssize_t s, m
    for s in range(active.shape[0]):
        for m in range(active.shape[1]):
            live[s] |= active[s, m]
    return live


def partial_sums(
    size_t gemm_address,
    const int8_t[:, ::1] codes,
    const float[:, ::1] weights,
    const int32_t[:, ::1] bounds,
    const uint8_t[:, ::1] active,
    Py_ssize_t block_rows,
    float[:, :, ::1] analog,
):
    """(S, B, M) partial sums into ``analog``, computed exactly as :func:`simulate` computes them.

    For the numpy reference: the same blocks and sgemm calls, so both backends convert
    bit-identical values.
    """
    cdef sgemm_t gemm = <sgemm_t>gemm_address
    cdef Py_ssize_t batch = codes.shape[0], width = codes.shape[1], columns = weights.shape[1]
    cdef Py_ssize_t segments = bounds.shape[0]
    cdef Py_ssize_t blocks = (batch + block_rows - 1) // block_rows
    cdef uint8_t* segment_live = _segment_live(active)
    cdef Py_ssize_t blk, first, rows, s
    cdef float* values = NULL
    cdef float* block_sums = NULL
    cdef uint32_t* ones = NULL
    cdef uint8_t* group_ones = NULL
    with nogil, parallel():
        values = <float*>_aligned(block_rows * width * sizeof(float))
        block_sums = <float*>_aligned(segments * block_rows * columns * sizeof(float))
        ones = <uint32_t*>calloc(width, sizeof(uint32_t))
        group_ones = <uint8_t*>malloc(width)
        for blk in prange(blocks, schedule="dynamic"):
            first = blk * block_rows
            rows = min(block_rows, batch - first)
            _pack_rows(&codes[first, 0], rows, width, values, ones, group_ones)
            _gemm_segments(
                gemm, values, <int>rows, <int>width, &weights[0, 0], <int>columns, &bounds[0, 0],
                segment_live, segments, block_sums,
            )
            for s in range(segments):
                memcpy(&analog[s, first, 0], block_sums + s * rows * columns, rows * columns * sizeof(float))
        free(values)
        free(block_sums)
        free(ones)
        free(group_ones)
    free(segment_live)


def simulate(
    size_t gemm_address,
    const int8_t[:, ::1] codes,
    const int8_t[:, :, :, ::1] images,
    const Py_ssize_t[::1] geometry,
    const float[:, ::1] weights,
    const int32_t[:, ::1] bounds,
    const uint8_t[:, ::1] active,
    const uint8_t[:, ::1] converted,
    const float[::1] pre_scale,
    const double[::1] lsb,
    const float[::1] post_gain,
    const float[::1] offset,
    const float[::1] sign_threshold,
    const float[::1] bias,
    const float[::1] inl_c0,
    const float[::1] inl_c1,
    const int32_t[::1] adc_of_column,
    const float[:, ::1] inl_table,
    const float[:, ::1] correction,
    const float[::1] normal_table,
    float compression,
    float inv_levels,
    int max_code,
    float noise_sigma,
    uint64_t noise_key,
    bint analog,
    float hold_keep,
    bint fused,
    bint digital_relu,
    Py_ssize_t block_rows,
    double[:, ::1] out,
    int64_t[::1] ones_per_row,
):
    """One layer call: int8 codes (B, K) -> ``out`` (B, M); returns the sign-only count.

    Each thread takes whole blocks of ``block_rows`` input vectors and runs them start to
    end with no synchronisation: pack (int8 -> float32, input ones), one sgemm per
    segment (``bounds`` holds [lo, hi) rows of each, ``active`` (S, M) which columns hold
    weights), then conversion in chunks: one step per segment, or with ``analog`` one
    step of the held sum; ``converted`` (steps, M) marks the conversions that happen,
    ``pre_scale`` and ``lsb`` are per step. Input ones per row are added to
    ``ones_per_row``. Input vectors are the rows of ``codes`` (B, K), or, when ``codes`` is
    empty (0, K), a convolution's windows gathered block by block from ``images``
    (N, C, H, W) with ``geometry`` (kh, kw, sh, sw, ph, pw, dh, dw): B = N*Ho*Wo, never
    materialised. ``correction`` is (adcs, 2*max_code+1) or empty (0, 0) for raw
    codes; ``inl_table`` (adcs, max_code+2) measured INL or empty (0, 0) for the modeled
    curve. B must stay below 2**29 (uint32 ones per thread).
    """
    cdef sgemm_t gemm = <sgemm_t>gemm_address
    cdef bint conv = codes.shape[0] == 0 and images.shape[0] > 0
    cdef ConvGeometry g = _geometry(images, geometry)
    cdef Py_ssize_t batch = images.shape[0] * g.out_h * g.out_w if conv else codes.shape[0]
    cdef Py_ssize_t width = codes.shape[1], columns = weights.shape[1]
    cdef Py_ssize_t segments = bounds.shape[0]
    if conv and g.channels * g.kernel_h * g.kernel_w != width:
        raise ValueError(f"conv windows hold {g.channels * g.kernel_h * g.kernel_w} values; weights have {width} rows")
    if batch >= 1 << 29:
        raise ValueError(f"simulate at most 2**29 vectors per call; got {batch}")
    cdef Conversion cv
    cv.columns = columns
    cv.segments = segments
    cv.steps = converted.shape[0]
    cv.chunk_rows = max(1, CHUNK_CONVERSIONS // columns)
    cv.total_vectors = batch
    cv.pre_scale = &pre_scale[0]
    cv.lsb = &lsb[0]
    cv.hold_keep = hold_keep
    cv.analog = analog
    cv.compression = compression
    cv.inv_levels = inv_levels
    cv.max_code = <float>max_code
    cv.noise_sigma = noise_sigma
    cv.noise_key = noise_key
    cv.fused = fused
    cv.digital_relu = digital_relu
    cv.normal_table = &normal_table[0]
    cv.correction = &correction[0, 0] if correction.shape[0] > 0 else NULL
    cv.inl_table = &inl_table[0, 0] if inl_table.shape[0] > 0 else NULL
    cdef Py_ssize_t span = cv.chunk_rows * columns
    cv.tiled = _tile(
        span, columns, &post_gain[0], &offset[0], &sign_threshold[0], &bias[0], &inl_c0[0], &inl_c1[0],
        &adc_of_column[0], correction.shape[1], max_code,
    )
    cdef uint8_t* live = <uint8_t*>malloc(cv.steps * span)
    cdef Py_ssize_t s, i, k, t
    for s in range(cv.steps):
        for i in range(span):
            live[s * span + i] = converted[s, i % columns]
    cv.live = live
    cdef uint8_t* segment_live = _segment_live(active)
    cdef int threads = openmp.omp_get_max_threads()
    cdef uint32_t* ones = <uint32_t*>calloc(threads * width, sizeof(uint32_t))

    cdef Py_ssize_t blocks = (batch + block_rows - 1) // block_rows
    cdef Py_ssize_t blk, first, rows, j = 0
    cdef int64_t sign_only = 0
    cdef float* noise = NULL
    cdef int32_t* signed_code = NULL
    cdef int32_t* positive = NULL
    cdef float* corrected = NULL
    cdef float* held = NULL
    cdef float* values = NULL
    cdef float* block_sums = NULL
    cdef uint8_t* group_ones = NULL
    cdef int8_t* gathered = NULL
    with nogil, parallel(num_threads=threads):
        values = <float*>_aligned(block_rows * width * sizeof(float))
        gathered = <int8_t*>malloc(block_rows * width if conv else 1)
        block_sums = <float*>_aligned(segments * block_rows * columns * sizeof(float))
        group_ones = <uint8_t*>malloc(width)
        noise = <float*>malloc(span * sizeof(float))
        signed_code = <int32_t*>malloc(span * sizeof(int32_t))
        positive = <int32_t*>malloc(span * sizeof(int32_t))
        corrected = <float*>malloc(span * sizeof(float))
        held = <float*>malloc(span * sizeof(float))
        for j in range(span):
            noise[j] = 0.0  # stays 0 without noise: adding +0 changes no decision or code
        for blk in prange(blocks, schedule="dynamic"):
            first = blk * block_rows
            rows = min(block_rows, batch - first)
            if conv:
                _gather_rows(&g, first, rows, gathered)
            _pack_rows(
                gathered if conv else &codes[first, 0], rows, width, values,
                ones + openmp.omp_get_thread_num() * width, group_ones,
            )
            _gemm_segments(
                gemm, values, <int>rows, <int>width, &weights[0, 0], <int>columns, &bounds[0, 0],
                segment_live, segments, block_sums,
            )
            sign_only += _convert_block(
                &cv, block_sums, rows, first, &out[first, 0], noise, signed_code, positive, corrected,
                held,
            )
        free(values)
        free(block_sums)
        free(group_ones)
        free(noise)
        free(signed_code)
        free(positive)
        free(corrected)
        free(held)
        free(gathered)
    for t in range(threads):
        for k in range(width):
            ones_per_row[k] += ones[t * width + k]
    free(ones)
    free(segment_live)
    free(live)
    _free_tiled(&cv.tiled)
    return sign_only
