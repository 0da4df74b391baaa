"""matchms filter ``require_mass_in_range``."""

from __future__ import annotations

from matchms import Spectrum

from matchms_neims.filters._checks import keep_or_drop, mass_range_problem


def require_mass_in_range(spectrum_in: Spectrum | None, max_mz: int = 500, clone: bool = True) -> Spectrum | None:
    """Remove spectra of molecules whose molecular ion lies above ``max_mz`` (they cannot be predicted).

    Parameters
    ----------
    spectrum_in
        Input spectrum with a ``smiles`` entry.
    max_mz
        Upper end of the predicted m/z range.
    clone
        Return a copy of the spectrum rather than the input object.
    """
    if spectrum_in is None:
        return None
    return keep_or_drop(spectrum_in, mass_range_problem(spectrum_in, max_mz), "require_mass_in_range", clone)
