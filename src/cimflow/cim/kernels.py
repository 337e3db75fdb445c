"""The compiled core this CPU runs fastest, and the sgemm it calls.

The same Cython source (_kernel_core.pxi) is compiled three times: for any CPU, for
x86-64-v3 (AVX2) and for x86-64-v4 (AVX-512); the transfer loop runs about 3.5x faster
with AVX-512 than with baseline SSE2, and all builds give identical results.

The kernel calls BLAS sgemm itself, from inside its OpenMP threads, so a layer runs in
one parallel region with no per-block synchronisation. The sgemm is MKL's as linked into
torch (it runs sequentially when called from a parallel region), else scipy's OpenBLAS.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from cimflow.cim import _kernels


def _best() -> ModuleType:
    if _kernels.cpu_supports("x86-64-v4"):
        from cimflow.cim import _kernels_x86_64_v4

        return _kernels_x86_64_v4
    if _kernels.cpu_supports("x86-64-v3"):
        from cimflow.cim import _kernels_x86_64_v3

        return _kernels_x86_64_v3
    return _kernels


def _torch_mkl_sgemm() -> int | None:
    for library in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            function = getattr(ctypes.CDLL(str(library)), "sgemm_", None)
        except OSError:
            continue
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value
    return None


def _scipy_sgemm() -> int:
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__["sgemm"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


compiled = _best()
"""Module with ``simulate``, ``partial_sums`` and ``im2col``."""
NO_IMAGES = np.zeros((0, 1, 1, 1), dtype=np.int8)
NO_GEOMETRY = np.array([1, 1, 1, 1, 0, 0, 1, 1], dtype=np.intp)
"""Stand-ins for ``simulate``'s images and geometry when the vectors are given as rows."""
SGEMM = _torch_mkl_sgemm() or _scipy_sgemm()
"""Address of a Fortran-interface sgemm for the kernels."""


@dataclass(frozen=True)
class ConvWindows:
    """A convolution's input vectors, described instead of materialised.

    ``images``: int8 (N, C, H, W). Vector (n, ho, wo) is the window of output pixel
    (ho, wo) of image n in (c, i, j) order (a (M, C, kh, kw) weight flattened per output
    channel), zero padded. The compiled pass gathers each block of vectors into its cache
    as it goes, so the (N*Ho*Wo, C*kh*kw) matrix is never written out.
    """

    images: np.ndarray
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def __post_init__(self) -> None:
        if self.images.dtype != np.int8 or self.images.ndim != 4:
            raise ValueError(f"images must be a 4-D int8 array; got {self.images.dtype} {self.images.shape}")
        object.__setattr__(self, "images", np.ascontiguousarray(self.images))

    @property
    def output_size(self) -> tuple[int, int]:
        h, w = self.images.shape[2:]
        return tuple(  # type: ignore[return-value]
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, k, s, p, d in zip((h, w), self.kernel, self.stride, self.padding, self.dilation)
        )

    @property
    def shape(self) -> tuple[int, int]:
        out_h, out_w = self.output_size
        return self.images.shape[0] * out_h * out_w, self.images.shape[1] * self.kernel[0] * self.kernel[1]

    def geometry(self) -> np.ndarray:
        return np.array([*self.kernel, *self.stride, *self.padding, *self.dilation], dtype=np.intp)

    def materialize(self) -> np.ndarray:
        """The (N*Ho*Wo, C*kh*kw) int8 vectors (compiled and threaded)."""
        out = np.empty(self.shape, dtype=np.int8)
        compiled.im2col(self.images, self.geometry(), out)
        return out
