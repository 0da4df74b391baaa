"""The records the readers yield, how they report the records they skip (:class:`RecordProblems`, of
:class:`~matchms_neims.problems.RecordProblem`), and conversions between records and matchms spectra.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matchms import Spectrum

from matchms_neims.problems import ProblemLog, RecordProblem
from matchms_neims.utils import quiet_matchms

logger = logging.getLogger(__name__)


@dataclass
class SpectrumRecord:
    """One spectrum as read from a file: metadata plus peak arrays.

    Attributes
    ----------
    metadata
        Metadata with lower-case, harmonised keys (``compound_name``, ``smiles``, ``inchikey``, ...).
        Repeated ``Synon:`` lines are collected in the list ``synonyms``; coded ones become keys (NIST
        ``$:28<InChIKey>`` -> ``inchikey``, GMD ``METB InChIKey: ...`` -> ``inchikey``, ``RI: 986,12`` ->
        ``retention_index`` ``"986.12"``, ``METB N: <name>`` -> ``synonyms``).
    mz, intensities
        Peak arrays (float64), sorted by m/z.
    peak_comments
        ``{mz: comment}`` for annotated peaks.
    """

    metadata: dict
    mz: np.ndarray
    intensities: np.ndarray
    peak_comments: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("compound_name") or self.metadata.get("spectrum_id") or "")

    def to_spectrum(self) -> Spectrum:
        """Convert to a :class:`matchms.Spectrum` (metadata harmonised by matchms, no precursor warnings)."""
        metadata = dict(self.metadata)
        if self.peak_comments:
            metadata["peak_comments"] = dict(self.peak_comments)
        with quiet_matchms():
            return Spectrum(mz=self.mz, intensities=self.intensities, metadata=metadata, metadata_harmonization=True)


class SpectrumFileError(ValueError):
    """A spectrum file or one of its records cannot be read."""


class RecordProblems(ProblemLog):
    """Reports the skipped records of one file: to the caller's list and the log (:class:`ProblemLog`), or raised."""

    def __init__(self, path: Path, collected: list | None, on_error: str):
        if on_error not in ("skip", "raise"):
            raise ValueError("on_error must be 'skip' or 'raise'")
        super().__init__("bad records", where=path.name, collected=collected, log=logger)
        self.on_error = on_error

    def report(self, problem: RecordProblem) -> None:
        if self.on_error == "raise":
            raise SpectrumFileError(str(problem))
        super().report(problem)


def spectrum_to_record(spectrum: Spectrum) -> SpectrumRecord:
    """Wrap a :class:`matchms.Spectrum` as a :class:`SpectrumRecord` (no copy of the peaks)."""
    metadata = dict(spectrum.metadata)
    comments = metadata.pop("peak_comments", None) or {}
    return SpectrumRecord(metadata, spectrum.peaks.mz, spectrum.peaks.intensities, comments)


def as_record(item: Spectrum | SpectrumRecord) -> SpectrumRecord:
    """A :class:`SpectrumRecord` as it is, or a :class:`matchms.Spectrum` as one; a ``TypeError`` for anything else."""
    if isinstance(item, SpectrumRecord):
        return item
    if isinstance(item, Spectrum):
        return spectrum_to_record(item)
    raise TypeError(f"expected a matchms Spectrum or a SpectrumRecord, got {type(item).__name__}")
