"""matchms filter ``require_not_derivative``."""

from __future__ import annotations

from matchms import Spectrum

from matchms_neims.filters._checks import derivative_problem, keep_or_drop


def require_not_derivative(spectrum_in: Spectrum | None, clone: bool = True) -> Spectrum | None:
    """Remove spectra marked as derivatives (``Derivative_type``): their SMILES is the underivatised compound.

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
    return keep_or_drop(spectrum_in, derivative_problem(spectrum_in), "require_not_derivative", clone)
