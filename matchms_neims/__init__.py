"""matchms-neims: predict EI mass spectra from structure and search GC-MS unknowns against in-silico libraries.

Importing the package is cheap (the command line's ``--help`` and ``--version`` need nothing else): its parts load
when first used. ``import matchms_neims.filters`` registers the plugin's filters and its similarity
(``neimscosine``) with matchms, for ``SpectrumProcessor`` and ``Pipeline`` workflows (YAML files included).
"""

from __future__ import annotations

import importlib
import warnings

__version__ = "0.1.0"

# psims (pulled in by matchms' mzML/mzXML readers) warns at import about an optional HDF5 plugin that this
# package never needs.
warnings.filterwarnings("ignore", message="hdf5plugin is missing")

#: Public names and the module each is loaded from on first use (PEP 562).
_LAZY = {"NeimsPredictor": "matchms_neims.predictor", "NeimsCosine": "matchms_neims.similarity",
         "filters": "matchms_neims.filters"}

__all__ = ["NeimsCosine", "NeimsPredictor", "__version__", "filters"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'matchms_neims' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "filters" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
