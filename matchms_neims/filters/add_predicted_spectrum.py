"""matchms filter ``add_predicted_spectrum``: give a spectrum the predicted EI spectrum of its SMILES."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from matchms import Spectrum

from matchms_neims.chemistry import MoleculeError
from matchms_neims.filters._checks import record_label

logger = logging.getLogger("matchms_neims.filters")

#: Metadata of a measured record that a predicted spectrum must not carry over (matchms harmonised names).
MEASUREMENT_KEYS = frozenset({
    "spectrum_id", "num_peaks", "peak_comments", "instrument", "instrument_type", "instrument_name",
    "instrument_manufacturer", "ms_type", "ms_level", "spectrum_type", "ionmode", "ionization",
    "ionization_energy", "collision_energy", "fragmentation_method", "scan_number", "scans",
    "retention_time", "precursor_mz", "precursor_type", "adduct", "charge", "pepmass", "license", "licence",
    "copyright", "authors", "author", "publication", "date", "comment", "comments", "accession",
    "column", "column_name", "derivative_type", "sample", "splash",
})
#: Structure keys of the input that the predicted molecule's own replace or that would contradict it: the
#: predictor standardises the structure (a salt becomes its largest organic fragment), so an input InChI or
#: formula may describe another molecule.
STRUCTURE_KEYS = frozenset({
    "inchi", "inchikey", "smiles", "formula", "molecular_formula", "nominal_mass", "exact_mass", "parent_mass",
    "precursor_formula", "mw", "monoisotopic_mass",
})


@lru_cache(maxsize=4)
def _cached_predictor(model: str | None, model_sha256: str | None = None):
    from matchms_neims.checkpoint import bundled_model_path
    from matchms_neims.predictor import NeimsPredictor
    from matchms_neims.utils import file_sha256

    if model_sha256 is not None:  # (a YAML digest of digits only reads back as a number)
        path = bundled_model_path() if model is None else model
        found = file_sha256(path)
        if found != str(model_sha256):
            raise ValueError(f"add_predicted_spectrum: the model file {path} has sha256 {found}, but the workflow "
                             f"names {model_sha256}: it is not the model the workflow was written with")
    return NeimsPredictor(model)


def predicted_spectrum_step(model: str | os.PathLike | None = None, min_relative_intensity: float = 0.001
                            ) -> tuple[str, dict]:
    """The ``add_predicted_spectrum`` step of a matchms workflow, naming its model file by path and sha256.

    Give it to ``matchms.Pipeline.create_workflow(query_filters=[...])``: the YAML file then records which model
    made the spectra, and running it with another file fails instead of silently predicting with that one.

    Parameters
    ----------
    model
        Model file (recorded by absolute path); ``None``: the bundled default model (recorded as ``None``, so the
        workflow runs on other installations of the same model, checked by its digest).
    min_relative_intensity
        As in :func:`add_predicted_spectrum`.
    """
    from matchms_neims.checkpoint import bundled_model_path
    from matchms_neims.utils import file_sha256

    path = os.path.abspath(bundled_model_path() if model is None else model)
    # the bundled model stays ``None`` (a workflow that runs on any installation with the same model), pinned by
    # its digest all the same
    return ("add_predicted_spectrum", {"predictor": None if model is None else path, "model_sha256": file_sha256(path),
                                       "min_relative_intensity": min_relative_intensity})


def add_predicted_spectrum(spectrum_in: Spectrum | None, predictor=None, min_relative_intensity: float = 0.001,
                           model_sha256: str | None = None, clone: bool = True) -> Spectrum | None:
    """A new, predicted record: the EI spectrum predicted from the ``smiles`` metadata of a spectrum.

    Use it in a matchms ``SpectrumProcessor`` or ``Pipeline`` to turn records with structures (e.g. an MSP of
    candidate molecules) into an in-silico library. The result is a record of its own:

    - its metadata is that of :meth:`~matchms_neims.predictor.NeimsPredictor.spectrum_metadata`: its own
      ``spectrum_id`` (model name and InChIKey), the molecule's identity, ``predicted=True``, the model, and EI
      metadata (``ionmode``, ``ms_level``, ``ionization``, ``ionization_energy``) that matchms's requirement
      filters accept when they process predicted records (in the same SpectrumProcessor, matchms's filter order
      runs them before this filter, on the input record);
    - the input's annotations of the compound (names, CAS, retention index, database ids, ...) are kept, but
      not what describes the measured record (:data:`MEASUREMENT_KEYS`: instrument, licence, peak count, ...)
      nor its structure keys (:data:`STRUCTURE_KEYS`: those of the predicted, standardised molecule replace
      them; an input InChI of a salt would contradict the predicted fragment);
    - the input's ``spectrum_id`` is kept as ``source_spectrum_id``.

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
    model_sha256
        With a model path (or ``None``): the sha256 the model file must have (see :func:`predicted_spectrum_step`);
        a ``ValueError`` names both digests when it differs.
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
        predictor = _cached_predictor(None if predictor is None else str(predictor), model_sha256)
    from matchms_neims.io import as_molecule_input

    molecule = as_molecule_input(spectrum_in, 0)
    molecule.record = record_label(spectrum_in)
    try:
        predicted = predictor.predict_spectra([molecule], min_relative_intensity=min_relative_intensity,
                                              on_error="raise")[0]
    except MoleculeError as error:
        logger.info("%s removed by add_predicted_spectrum: %s", molecule.record, error.reason)
        return None
    metadata = {key: value for key, value in spectrum_in.metadata.items()
                if key not in MEASUREMENT_KEYS and key not in STRUCTURE_KEYS}
    if spectrum_in.get("spectrum_id"):
        metadata["source_spectrum_id"] = spectrum_in.get("spectrum_id")
    for key, value in predicted.metadata.items():
        if key == "compound_name" and metadata.get("compound_name"):
            continue
        metadata[key] = value
    spectrum = Spectrum(mz=predicted.peaks.mz, intensities=predicted.peaks.intensities, metadata=metadata,
                        metadata_harmonization=False)
    if not clone:  # matchms convention: clone=False works on the input object
        spectrum_in.metadata = spectrum.metadata
        spectrum_in.peaks = spectrum.peaks
        return spectrum_in
    return spectrum
