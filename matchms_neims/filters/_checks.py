"""Record checks behind the cleaning filters: each returns ``None`` when the record passes, else a reason."""

from __future__ import annotations

import logging

from matchms import Spectrum

from matchms_neims.chemistry import MoleculeError, element_counts, parse_smiles
from matchms_neims.chemistry import nominal_mass as molecule_nominal_mass


def record_label(spectrum: Spectrum) -> str:
    """How a record is named in messages: its id and name where known."""
    parts = [str(spectrum.get(key)) for key in ("spectrum_id", "compound_name") if spectrum.get(key)]
    return " ".join(parts) or "unnamed record"


def record_molecule(spectrum: Spectrum):
    """``(mol, None)`` for a spectrum whose SMILES parses, else ``(None, reason)``."""
    smiles = spectrum.get("smiles")
    if not smiles:
        return None, "no SMILES"
    try:
        return parse_smiles(smiles, record_label(spectrum)), None
    except MoleculeError as error:
        return None, error.reason


def smiles_problem(spectrum: Spectrum) -> str | None:
    return record_molecule(spectrum)[1]


def derivative_problem(spectrum: Spectrum) -> str | None:
    derivative = spectrum.get("derivative_type") or spectrum.get("derivative")
    if derivative and str(derivative).strip().lower() not in ("", "none", "na", "n/a", "underivatized"):
        return f"derivative record ({derivative}): the spectrum is of the derivative, the SMILES is not"
    return None


def empty_problem(spectrum: Spectrum) -> str | None:
    intensities = spectrum.peaks.intensities
    if intensities.size == 0 or float(intensities.max()) <= 0:
        return "no peaks with positive intensity"
    return None


def isotope_window(counts: dict[str, int], base_window: float = 3.5) -> float:
    """Highest m/z above the monoisotopic mass that isotopes of this formula explain.

    ``base_window`` covers 13C/15N/18O/34S contributions; each Cl or Br adds two more Da (37Cl, 81Br),
    and S or Si one more.
    """
    halogens = counts.get("Cl", 0) + counts.get("Br", 0)
    extra = 1.0 if (counts.get("S", 0) or counts.get("Si", 0)) else 0.0
    return base_window + 2.0 * halogens + extra


def consistency_problem(spectrum: Spectrum, min_relative_intensity: float = 0.02,
                        base_window: float = 3.5) -> str | None:
    """Reason why a spectrum cannot belong to its SMILES, or ``None``.

    A spectrum is inconsistent when a peak of at least ``min_relative_intensity`` of the base peak
    lies above the monoisotopic mass of the molecule plus its isotope window. Derivatised samples
    whose SMILES is the parent compound, contaminated and mislabelled records fail this test.
    """
    mol, reason = record_molecule(spectrum)
    if mol is None:
        return reason
    from rdkit.Chem import rdMolDescriptors

    mass = rdMolDescriptors.CalcExactMolWt(mol)
    limit = mass + isotope_window(element_counts(mol), base_window)
    mz, intensities = spectrum.peaks.mz, spectrum.peaks.intensities
    if intensities.size == 0:
        return None
    significant = intensities >= min_relative_intensity * intensities.max()
    above = mz[significant & (mz > limit)]
    if above.size:
        return (f"{above.size} significant peak(s) above the molecular mass {mass:.2f} + isotope window "
                f"(highest m/z {above.max():.1f}, limit {limit:.1f})")
    return None


def mass_range_problem(spectrum: Spectrum, max_mz: int = 500) -> str | None:
    mol, reason = record_molecule(spectrum)
    if mol is None:
        return reason
    mass = molecule_nominal_mass(mol)
    if mass > max_mz:
        return f"molecular ion m/z {mass} is above the m/z range 0..{max_mz}"
    return None


def keep_or_drop(spectrum_in: Spectrum, reason: str | None, filter_name: str, clone: bool) -> Spectrum | None:
    """Shared ending of the ``require_*`` filters: log and drop on a reason, else pass (a clone of) the spectrum."""
    if reason is not None:
        logging.getLogger("matchms_neims.filters").info("%s removed by %s: %s", record_label(spectrum_in),
                                                        filter_name, reason)
        return None
    return spectrum_in.clone() if clone else spectrum_in
