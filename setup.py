"""Cython build hook: every ``src/cimflow/**/*.pyx`` becomes a compiled extension.

Metadata lives in pyproject.toml; this file only exists because setuptools needs
``ext_modules`` from code. OpenMP is used where the compiler supports it.
"""

from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _extensions() -> list[Extension]:
    exts = []
    for pyx in sorted(Path("src").rglob("*.pyx")):
        module = ".".join(pyx.relative_to("src").with_suffix("").parts)
        exts.append(
            Extension(
                module,
                [str(pyx)],
                include_dirs=[np.get_include()],
                extra_compile_args=["-O3", "-fopenmp"],
                extra_link_args=["-fopenmp"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return exts


setup(
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
