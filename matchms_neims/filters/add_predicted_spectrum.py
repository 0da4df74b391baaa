"""matchms filter ``add_predicted_spectrum``: give a spectrum the predicted EI spectrum of its SMILES."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from matchms import Spectrum

from matchms_neims.chemistry import MoleculeError
from matchms_neims.filters._checks import record_label

logger = logging.getLogger("matchms_neims.filters")


@lru_cache(maxsize=4)
def _cached_predictor(model: str | None):
    from matchms_neims.predictor import NeimsPredictor

    return NeimsPredictor(model)


def add_predicted_spectrum(spectrum_in: Spectrum | None, predictor=None, min_relative_intensity: float = 0.001,
                           clone: bool = True) -> Spectrum | None:
    """Replace the peaks of a spectrum by the EI spectrum predicted from its ``smiles`` metadata.

    The metadata of the input is kept and extended with the identity of the predicted molecule
    (``inchikey``, ``formula``, ``nominal_mass``) and with ``predicted=True``, ``model_name`` and
    ``model_version``. Use it in a matchms ``SpectrumProcessor`` or ``Pipeline`` to turn records
    with structures (e.g. an MSP of candidate molecules) into an in-silico library.

    Parameters
    ----------
    spectrum_in
        Spectrum whose metadata holds a ``smiles`` entry (its peaks, if any, are replaced).
    predictor
        A :class:`~matchms_neims.predictor.NeimsPredictor`, the path of a model file, or ``None``
        for the bundled model. Paths (and ``None``) keep YAML workflows serialisable; the loaded
        model is cached.
    min_relative_intensity
        Drop predicted peaks below this fraction of the base peak.
    clone
        Work on a copy of the input (matchms convention).

    Returns
    -------
    Spectrum or None
        The predicted spectrum, or ``None`` (logged with the reason) when the SMILES is missing or
        cannot be predicted.
    """
    if spectrum_in is None:
        return None
    if predictor is None or isinstance(predictor, (str, os.PathLike)):
        predictor = _cached_predictor(None if predictor is None else str(predictor))
    from matchms_neims.predictor import as_molecule_input

    molecule = as_molecule_input(spectrum_in, 0)
    molecule.record = record_label(spectrum_in)
    try:
        predicted = predictor.predict_spectra([molecule], min_relative_intensity=min_relative_intensity,
                                              on_error="raise")[0]
    except MoleculeError as error:
        logger.info("%s removed by add_predicted_spectrum: %s", molecule.record, error.reason)
        return None
    metadata = dict(spectrum_in.metadata) if clone else spectrum_in.metadata
    for key, value in predicted.metadata.items():
        if key == "compound_name" and metadata.get("compound_name"):
            continue
        metadata[key] = value
    return Spectrum(mz=predicted.peaks.mz, intensities=predicted.peaks.intensities, metadata=metadata,
                    metadata_harmonization=False)
