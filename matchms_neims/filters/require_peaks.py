"""matchms filter ``require_peaks``."""

from __future__ import annotations

from matchms import Spectrum

from matchms_neims.filters._checks import empty_problem, keep_or_drop


def require_peaks(spectrum_in: Spectrum | None, clone: bool = True) -> Spectrum | None:
    """Remove spectra without any peak of positive intensity.

    Parameters
    ----------
    spectrum_in
        Input spectrum (None passes through).
    clone
        Return a copy of the spectrum rather than the input object.

    Returns
    -------
    Spectrum or None
        The spectrum, or None when it is removed (the reason is logged at INFO level).
    """
    if spectrum_in is None:
        return None
    return keep_or_drop(spectrum_in, empty_problem(spectrum_in), "require_peaks", clone)
