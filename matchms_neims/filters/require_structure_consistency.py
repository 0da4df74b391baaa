"""matchms filter ``require_structure_consistency``."""

from __future__ import annotations

from matchms import Spectrum

from matchms_neims.filters._checks import consistency_problem, keep_or_drop


def require_structure_consistency(spectrum_in: Spectrum | None, min_relative_intensity: float = 0.02,
                                  isotope_window: float = 3.5, clone: bool = True) -> Spectrum | None:
    """Remove spectra that cannot belong to their SMILES.

    A spectrum is removed when a peak of at least ``min_relative_intensity`` of the base peak lies
    above the molecule's monoisotopic mass plus its isotope window (``isotope_window`` Da, plus 2 Da
    per Cl/Br atom and 1 Da when S or Si is present). This catches derivatised samples recorded with
    the parent compound's SMILES, contamination and mislabelled records, whether or not they are marked.

    Parameters
    ----------
    spectrum_in
        Input spectrum with a ``smiles`` entry.
    min_relative_intensity
        Fraction of the base peak from which a peak counts as significant.
    isotope_window
        Da above the monoisotopic mass explained by 13C, 15N, 18O and 34S isotopes.
    clone
        Return a copy of the spectrum rather than the input object.
    """
    if spectrum_in is None:
        return None
    reason = consistency_problem(spectrum_in, min_relative_intensity, isotope_window)
    return keep_or_drop(spectrum_in, reason, "require_structure_consistency", clone)
