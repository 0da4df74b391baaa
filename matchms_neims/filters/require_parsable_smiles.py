"""matchms filter ``require_parsable_smiles``."""

from __future__ import annotations

from matchms import Spectrum

from matchms_neims.filters._checks import keep_or_drop, smiles_problem


def require_parsable_smiles(spectrum_in: Spectrum | None, clone: bool = True) -> Spectrum | None:
    """Remove spectra whose SMILES is missing, unparsable or unsupported.

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
    return keep_or_drop(spectrum_in, smiles_problem(spectrum_in), "require_parsable_smiles", clone)
