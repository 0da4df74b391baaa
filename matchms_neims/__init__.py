"""matchms-neims: predict EI mass spectra from structure and search GC-MS unknowns against in-silico libraries."""

import warnings

__version__ = "0.1.0"

# psims (pulled in by matchms' mzML/mzXML readers) warns at import about an optional HDF5 plugin that this
# package never needs.
warnings.filterwarnings("ignore", message="hdf5plugin is missing")

from matchms_neims import filters  # noqa: E402,F401  (registers the filters with matchms)
from matchms_neims.predictor import NeimsPredictor  # noqa: E402

__all__ = ["NeimsPredictor", "__version__", "filters"]
