"""Reading and writing EI spectra: MSP (NIST, MassBank, MoNA flavours) and MGF.

The MSP reader is written for real library exports: several ``Synon:`` lines per record,
peak lists with several ``m/z intensity`` pairs per line separated by ``;``, tabs or spaces,
quoted peak annotations (``41 999 "C3H5+"``), CRLF line endings and records whose
``Num Peaks`` disagrees with the peaks actually listed. It yields lightweight
:class:`SpectrumRecord` objects (fast, used by the search and library code) or
:class:`matchms.Spectrum` objects with matchms' harmonised metadata keys.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from matchms import Spectrum

from matchms_neims.utils import atomic_output, quiet_matchms

logger = logging.getLogger(__name__)

SPECTRUM_FORMATS = ("msp", "mgf")

_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")
# MSP keys that are renamed to matchms harmonised names by this reader (matchms handles the rest).
_MSP_KEY_ALIASES = {
    "name": "compound_name",
    "db#": "spectrum_id",
    "nist#": "nist_id",
    "mw": "nominal_mass",
    "exactmass": "exact_mass",
    "exact_mass": "exact_mass",
    "num peaks": "num_peaks",
    "inchikey": "inchikey",
    "smiles": "smiles",
}


@dataclass
class SpectrumRecord:
    """One spectrum as read from a file: metadata plus peak arrays.

    Attributes
    ----------
    metadata
        Metadata with lower-case, harmonised keys (``compound_name``, ``smiles``, ``inchikey``, ...).
        Repeated ``Synon:`` lines are collected in the list ``synonyms``.
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


def _parse_peak_line(line: str, mz_out: list, int_out: list, comments: dict, where: Callable[[], str]) -> None:
    """Parse one MSP peak line that may hold several pairs and quoted comments.

    ``where()`` names the file, line and record in an error message (built only when one is raised).
    """
    if '"' in line or "'" in line:
        # Attach every comment to the pair written just before it.
        position = 0
        for match in _QUOTED.finditer(line):
            _parse_numbers(line[position : match.start()], mz_out, int_out, where)
            if mz_out:
                comments[mz_out[-1]] = match.group(0)[1:-1]
            position = match.end()
        _parse_numbers(line[position:], mz_out, int_out, where)
    else:
        _parse_numbers(line, mz_out, int_out, where)


def _parse_numbers(text: str, mz_out: list, int_out: list, where: Callable[[], str]) -> None:
    text = text.replace(":", " ")  # GOLM style "mz:intensity"
    numbers = _NUMBER.findall(text)
    if len(numbers) % 2:
        raise SpectrumFileError(f"{where()}: odd number of values in peak line {text.strip()!r}")
    for i in range(0, len(numbers), 2):
        mz_out.append(float(numbers[i]))
        int_out.append(float(numbers[i + 1]))


_COMMENT_PAIR = re.compile(r'"([^"=]+)=([^"]*)"')


def _parse_comment_pairs(value: str, metadata: dict) -> None:
    """Pull ``"key=value"`` pairs (MoNA / NIST exports put SMILES and InChIKey there) into the metadata."""
    for key, pair_value in _COMMENT_PAIR.findall(value):
        key = _MSP_KEY_ALIASES.get(key.strip().lower(), key.strip().lower().replace(" ", "_"))
        metadata.setdefault(key, pair_value.strip())


def _simple_pair(line: str) -> tuple[float, float] | None:
    """The pair of a plain ``"mz intensity"`` peak line (the common case, parsed fast); ``None`` for others."""
    parts = line.split()
    if len(parts) != 2:
        return None
    try:
        pair = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return pair if math.isfinite(pair[0]) and math.isfinite(pair[1]) else None


def _where(path: Path, line_number: int, metadata: dict) -> str:
    return f"{path.name}:{line_number} (record {metadata.get('compound_name', '?')!r})"


def _finish_record(metadata: dict, mz: list, intensities: list, comments: dict) -> SpectrumRecord:
    mz_array = np.asarray(mz, dtype=np.float64)
    int_array = np.asarray(intensities, dtype=np.float64)
    if mz_array.size > 1 and np.any(np.diff(mz_array) < 0):
        order = np.argsort(mz_array, kind="stable")
        mz_array, int_array = mz_array[order], int_array[order]
    return SpectrumRecord(metadata=metadata, mz=mz_array, intensities=int_array, peak_comments=comments)


def iter_msp(path: str | os.PathLike) -> Iterator[SpectrumRecord]:
    """Stream the records of an MSP file.

    Parameters
    ----------
    path
        MSP file (NIST export, MassBank, MoNA, or this package's own output).

    Yields
    ------
    SpectrumRecord
        One per record, in file order. A malformed peak line raises :class:`SpectrumFileError`
        naming the file, the line number and the record.
    """
    path = Path(path)
    metadata: dict = {}
    mz: list = []
    intensities: list = []
    comments: dict = {}
    in_peaks = False
    expected_peaks = -1
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            line = raw_line.strip().lstrip("\ufeff")
            if not line:
                if metadata or mz:
                    yield _finish_record(metadata, mz, intensities, comments)
                metadata, mz, intensities, comments = {}, [], [], {}
                in_peaks, expected_peaks = False, -1
                continue
            if in_peaks and (expected_peaks < 0 or len(mz) < expected_peaks) and not line.lower().startswith("name:"):
                pair = _simple_pair(line)
                if pair is None:
                    _parse_peak_line(line, mz, intensities, comments, partial(_where, path, line_number, metadata))
                else:
                    mz.append(pair[0])
                    intensities.append(pair[1])
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key = key.strip().lower()
            value = value.strip()
            if key == "name" and (metadata or mz):
                # A new record without a blank separator line.
                yield _finish_record(metadata, mz, intensities, comments)
                metadata, mz, intensities, comments = {}, [], [], {}
                in_peaks, expected_peaks = False, -1
            if key == "synon":
                metadata.setdefault("synonyms", []).append(value)
                continue
            if key == "comments" and "=" in value:
                _parse_comment_pairs(value, metadata)
            if key == "cas#" and ";" in value:
                # NIST exports put two fields on one line: "CAS#: 64-17-5;  NIST#: 1234"
                value, _, rest = value.partition(";")
                value = value.strip()
                other_key, _, other_value = rest.partition(":")
                if other_value:
                    other_key = other_key.strip().lower()
                    metadata[_MSP_KEY_ALIASES.get(other_key, other_key)] = other_value.strip()
            if key == "num peaks":
                in_peaks = True
                try:
                    expected_peaks = int(float(value))
                except ValueError:
                    expected_peaks = -1
            metadata[_MSP_KEY_ALIASES.get(key, key.replace(" ", "_"))] = value
    if metadata or mz:
        yield _finish_record(metadata, mz, intensities, comments)


def iter_mgf(path: str | os.PathLike) -> Iterator[SpectrumRecord]:
    """Stream the records of an MGF file (``BEGIN IONS`` ... ``END IONS``)."""
    path = Path(path)
    metadata: dict = {}
    mz: list = []
    intensities: list = []
    comments: dict = {}
    inside = False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            line = raw_line.strip().lstrip("\ufeff")
            if not line or line.startswith("#"):
                continue
            upper = line.upper()
            if upper == "BEGIN IONS":
                metadata, mz, intensities, comments, inside = {}, [], [], {}, True
                continue
            if upper == "END IONS":
                if inside:
                    yield _finish_record(metadata, mz, intensities, comments)
                inside = False
                continue
            if not inside:
                continue
            if "=" in line and not line[0].isdigit():
                key, _, value = line.partition("=")
                key = key.strip().lower()
                if key == "title" and "compound_name" not in metadata:
                    metadata["compound_name"] = value.strip()
                metadata[_MSP_KEY_ALIASES.get(key, key)] = value.strip()
                continue
            _parse_peak_line(line, mz, intensities, comments, partial(_where, path, line_number, metadata))


def detect_format(path: str | os.PathLike) -> str:
    """Return ``"msp"`` or ``"mgf"`` from the file extension."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in SPECTRUM_FORMATS:
        return suffix
    raise SpectrumFileError(f"{path}: unknown spectrum file type {suffix!r}; expected one of {SPECTRUM_FORMATS}")


def iter_records(path: str | os.PathLike) -> Iterator[SpectrumRecord]:
    """Stream :class:`SpectrumRecord` objects from an MSP or MGF file."""
    return iter_msp(path) if detect_format(path) == "msp" else iter_mgf(path)


def load_spectra(path: str | os.PathLike) -> list[Spectrum]:
    """Load all spectra of an MSP or MGF file as :class:`matchms.Spectrum` objects."""
    return [record.to_spectrum() for record in iter_records(path)]


def spectrum_to_record(spectrum: Spectrum) -> SpectrumRecord:
    """Wrap a :class:`matchms.Spectrum` as a :class:`SpectrumRecord` (no copy of the peaks)."""
    metadata = dict(spectrum.metadata)
    comments = metadata.pop("peak_comments", None) or {}
    return SpectrumRecord(metadata, spectrum.peaks.mz, spectrum.peaks.intensities, comments)


# --------------------------------------------------------------------------------------------- writing

_MSP_HEADER_KEYS = (
    ("compound_name", "Name"),
    ("formula", "Formula"),
    ("nominal_mass", "MW"),
    ("exact_mass", "ExactMass"),
    ("smiles", "SMILES"),
    ("inchikey", "InChIKey"),
)
_SKIPPED_KEYS = {"num_peaks", "peak_comments", "synonyms"}


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):  # e.g. a predicted spectrum's expert_weights: comma-separated values
        return ",".join(_format_value(item) for item in value)
    return str(value).replace("\n", " ")


def _format_peaks(mz: np.ndarray, intensities: np.ndarray) -> list[str]:
    """Format peaks with integer m/z where the values are integers (unit resolution)."""
    if mz.size and np.all(mz == np.round(mz)):
        mz_text = [str(int(v)) for v in mz]
    else:
        mz_text = [f"{v:.4f}" for v in mz]
    if intensities.size and np.all(intensities == np.round(intensities)):
        int_text = [str(int(v)) for v in intensities]
    else:
        int_text = [f"{v:.4g}" for v in intensities]
    return [f"{m} {i}" for m, i in zip(mz_text, int_text)]


def msp_header(metadata: dict) -> str:
    """The metadata lines of an MSP record (``Name:`` first), each ending with a newline."""
    lines = []
    for key, label in _MSP_HEADER_KEYS:
        value = metadata.get(key)
        if value not in (None, ""):
            lines.append(f"{label}: {_format_value(value)}\n")
    for synonym in metadata.get("synonyms", []) or []:
        lines.append(f"Synon: {synonym}\n")
    written = {key for key, _ in _MSP_HEADER_KEYS} | _SKIPPED_KEYS
    for key, value in metadata.items():
        if key not in written and value not in (None, ""):
            lines.append(f"{key}: {_format_value(value)}\n")
    return "".join(lines)


def format_msp_record(metadata: dict, mz: np.ndarray, intensities: np.ndarray) -> str:
    """Format one record as NIST-style MSP text (``Name:`` first, ``Num Peaks:`` then one peak per line)."""
    peak_lines = _format_peaks(np.asarray(mz), np.asarray(intensities))
    return msp_header(metadata) + f"Num Peaks: {len(peak_lines)}\n" + "".join(p + "\n" for p in peak_lines) + "\n"


def mgf_header(metadata: dict) -> str:
    """``BEGIN IONS`` and the metadata lines of an MGF record, each ending with a newline."""
    title = metadata.get("compound_name") or metadata.get("spectrum_id") or metadata.get("inchikey") or ""
    lines = ["BEGIN IONS\n", f"TITLE={_format_value(title)}\n"]
    for key, value in metadata.items():
        if key in _SKIPPED_KEYS or key == "title" or value in (None, ""):
            continue
        lines.append(f"{key.upper()}={_format_value(value)}\n")
    return "".join(lines)


def format_mgf_record(metadata: dict, mz: np.ndarray, intensities: np.ndarray) -> str:
    """Format one record as MGF text."""
    peak_lines = _format_peaks(np.asarray(mz), np.asarray(intensities))
    return mgf_header(metadata) + "".join(p + "\n" for p in peak_lines) + "END IONS\n\n"


def _as_record(item: Spectrum | SpectrumRecord) -> SpectrumRecord:
    return item if isinstance(item, SpectrumRecord) else spectrum_to_record(item)


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
    formatter = format_msp_record if file_format == "msp" else format_mgf_record
    count = 0
    with atomic_output(path) as handle:
        for item in spectra:
            record = _as_record(item)
            intensities = record.intensities
            if intensity_scale is not None and intensities.size and intensities.max() > 0:
                intensities = np.round(intensities / intensities.max() * intensity_scale)
            handle.write(formatter(record.metadata, record.mz, intensities))
            count += 1
    return count
