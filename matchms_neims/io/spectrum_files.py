"""MSP and MGF files by extension: the format of a path, its records read, and spectra written (atomically).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from matchms import Spectrum

from matchms_neims.io.mgf_reader import iter_mgf
from matchms_neims.io.mgf_writer import format_mgf_record
from matchms_neims.io.msp_reader import iter_msp
from matchms_neims.io.msp_writer import format_msp_record
from matchms_neims.io.records import SpectrumFileError, SpectrumRecord, as_record
from matchms_neims.io.text_files import is_gzip
from matchms_neims.problems import RecordProblem
from matchms_neims.utils import atomic_output

SPECTRUM_FORMATS = ("msp", "mgf")


def detect_format(path: str | os.PathLike) -> str:
    """Return ``"msp"`` or ``"mgf"`` from the file extension (a trailing ``.gz`` ignored: gzip files are read
    through :func:`open_text`)."""
    path = Path(path)
    suffix = (path.with_suffix("") if is_gzip(path) else path).suffix.lower().lstrip(".")
    if suffix in SPECTRUM_FORMATS:
        return suffix
    raise SpectrumFileError(f"{path}: unknown spectrum file type {suffix!r}; expected one of {SPECTRUM_FORMATS}")


def iter_records(path: str | os.PathLike, problems: list[RecordProblem] | None = None, on_error: str = "skip",
                 check_peaks: bool = True) -> Iterator[SpectrumRecord]:
    """Stream :class:`SpectrumRecord` objects from an MSP or MGF file, skipping bad records (see :func:`iter_msp`)."""
    reader = iter_msp if detect_format(path) == "msp" else iter_mgf
    return reader(path, problems, on_error, check_peaks)


def load_spectra(path: str | os.PathLike, problems: list[RecordProblem] | None = None, on_error: str = "skip"
                 ) -> list[Spectrum]:
    """Load the spectra of an MSP or MGF file as :class:`matchms.Spectrum` objects, skipping bad records."""
    return [record.to_spectrum() for record in iter_records(path, problems, on_error)]


def format_record(file_format: str, metadata: dict, mz, intensities) -> str:
    """One record as ``"msp"`` or ``"mgf"`` text (:func:`format_msp_record`, :func:`format_mgf_record`): the one
    writer of both formats, used by :func:`write_spectra` and the library builder."""
    return (format_msp_record if file_format == "msp" else format_mgf_record)(metadata, mz, intensities)


def write_spectra(
    spectra: Iterable[Spectrum | SpectrumRecord],
    path: str | os.PathLike,
    file_format: str | None = None,
    intensity_scale: float | None = 999.0,
) -> int:
    """Write spectra to an MSP or MGF file atomically (temporary file + rename).

    Parameters
    ----------
    spectra
        matchms spectra or :class:`SpectrumRecord` objects.
    path
        Output file.
    file_format
        ``"msp"`` or ``"mgf"``; taken from the extension when ``None``.
    intensity_scale
        Rescale each spectrum so that its base peak has this value and round to integers
        (999 is the library convention); ``None`` writes intensities unchanged.

    Returns
    -------
    int
        The number of spectra written.
    """
    file_format = file_format or detect_format(path)
    count = 0
    with atomic_output(path) as handle:
        for item in spectra:
            record = as_record(item)
            intensities = record.intensities
            if intensity_scale is not None and intensities.size and intensities.max() > 0:
                intensities = np.round(intensities / intensities.max() * intensity_scale)
            handle.write(format_record(file_format, record.metadata, record.mz, intensities))
            count += 1
    return count
