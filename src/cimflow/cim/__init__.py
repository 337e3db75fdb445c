"""CD-CiM macro simulator: accuracy, energy and throughput of a charge-domain SRAM macro.

Parameters (:class:`MacroConfig`) are kept apart from the compute (:class:`CimMacro`);
the heavy per-conversion pass is compiled (``_kernel_core.pxi``) behind a thin Python layer.
Nothing here imports from the rest of cimflow.

The names below load lazily (PEP 562), so importing ``cimflow.cim.config`` (as the
params schema does) neither loads the compiled kernels nor makes every pipeline stage
depend on the simulator's source files.
"""

from importlib import import_module

_EXPORTS = {
    "CalibrationTables": "cimflow.cim.calibration",
    "calibrate": "cimflow.cim.calibration",
    "ChipInstance": "cimflow.cim.chip",
    "MeasuredInl": "cimflow.cim.chip",
    "MacroConfig": "cimflow.cim.config",
    "MacroConfigError": "cimflow.cim.config",
    "merge_counters": "cimflow.cim.energy",
    "performance": "cimflow.cim.energy",
    "reference_workload": "cimflow.cim.energy",
    "MappedWeights": "cimflow.cim.mapping",
    "CimMacro": "cimflow.cim.simulator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cimflow.cim' has no attribute {name!r}")
