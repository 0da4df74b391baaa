"""The metadata of a predicted spectrum: who it is (name, SMILES, InChIKey, formula, masses), that it is a predicted
70 eV EI spectrum, which model made it, and what the model says about it (uncertainty, expert weights, formula-head
fallback). One plain function; :meth:`~matchms_neims.predictor.NeimsPredictor.spectrum_metadata` fills in its model's
part, for ``predict_spectra``, the library builder and the matchms filter.
"""

from __future__ import annotations

from collections.abc import Sequence

from matchms_neims.chemistry import MoleculeInfo
from matchms_neims.io import MoleculeInput


def predicted_spectrum_metadata(molecule: MoleculeInput, info: MoleculeInfo, model_name: str, model_version: str,
                                uncertainty: float | None = None, expert_weights: Sequence[float] | None = None,
                                formula_head_fallback: str | None = None) -> dict:
    """Metadata written into every predicted spectrum (matchms harmonised keys).

    A predicted spectrum is a record of its own: ``spectrum_id`` is the model name and the InChIKey, and the
    EI metadata (``ionmode: positive``, ``ms_level: "1"``, ``ionization: EI``, ``ionization_energy: 70 eV``,
    MassBank's form) lets matchms's requirement filters (``require_correct_ms_level(required_ms_level=1)``,
    ``require_correct_ionmode``) accept it when predicted records are processed (a library written by
    ``predict``, or a second SpectrumProcessor: within one, matchms orders those filters before
    ``add_predicted_spectrum``, so they see the input record).

    ``uncertainty`` (MC-dropout predictions) is stored as ``prediction_uncertainty``; ``expert_weights``
    (mixture-of-experts models) as ``expert_weights``, a list of floats rounded to 4 decimals. Models with a
    formula head note molecules rendered by its fallback in ``formula_head_fallback`` (the reason).
    """
    metadata = {
        "spectrum_id": f"{model_name}:{info.inchikey}",
        "compound_name": molecule.name or info.inchikey or info.smiles,
        "smiles": info.smiles,
        "inchikey": info.inchikey,
        "formula": info.formula,
        "nominal_mass": info.nominal_mass,
        "exact_mass": round(info.exact_mass, 5),
        "ionmode": "positive",
        "ms_level": "1",
        "ionization": "EI",
        "ionization_energy": "70 eV",
        "predicted": True,
        "model_name": model_name,
        "model_version": model_version,
    }
    if molecule.smiles and molecule.smiles != info.smiles:
        metadata["input_smiles"] = molecule.smiles
    if info.standardization:
        metadata["standardization"] = info.standardization
    if uncertainty is not None:
        metadata["prediction_uncertainty"] = round(float(uncertainty), 4)
    if expert_weights is not None:
        metadata["expert_weights"] = [round(float(weight), 4) for weight in expert_weights]
    if formula_head_fallback:
        metadata["formula_head_fallback"] = formula_head_fallback
    return metadata


__all__ = ["predicted_spectrum_metadata"]
