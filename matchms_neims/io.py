"""Reading and writing EI spectra: MSP (NIST, MassBank, MoNA, RIKEN and Golm flavours) and MGF.

The MSP reader is written for real library exports: several ``Synon:`` lines per record (NIST's
``$:NN`` and Golm's ``KEY: value`` codes read as metadata keys), records whose ``Name`` is not the first line,
peak lists with several ``m/z intensity`` pairs per line separated by ``;``, tabs or spaces,
quoted peak annotations (``41 999 "C3H5+"``), CRLF line endings and records whose
``Num Peaks`` disagrees with the peaks actually listed. It yields lightweight
:class:`SpectrumRecord` objects (fast, used by the search and library code) or
:class:`matchms.Spectrum` objects with matchms' harmonised metadata keys.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
#: Keys of Golm Metabolome Database (GMD) exports, written as plain lines or as ``Synon: KEY: value`` lines,
#: renamed as matchms renames them (its ``synon_metb_*`` and ``synon_ri`` conversions). ``METB N`` lines are
#: the metabolite's names: they go to ``synonyms``. Other GMD keys keep their own name (``mst_n``, ``gmd_link``).
_GOLM_KEY_ALIASES = {
    "ri": "retention_index",
    "metb inchikey": "inchikey",
    "metb inchi": "inchi",
    "metb cas": "cas",
    "metb kegg": "kegg",
    "metb class": "compound_class",
    "metb n": "synonyms",
}
#: First words of the GMD keys; a ``Synon:`` line whose text starts with one of them and a colon is a key.
_GOLM_KEY_WORDS = frozenset({"metb", "mst", "gmd", "ri"})
#: Plain MSP keys that GMD also writes inside ``Synon:`` lines (``Synon: MW: 220,457``).
_SYNON_MSP_KEYS = frozenset({"formula", "mw", "exactmass", "inchikey", "inchi", "smiles", "cas#"})
#: GMD writes numbers with a decimal comma (``RI: 986,12``, ``MW: 175,301``); read in GMD records only.
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")
#: NIST's coded ``Synon: $:NN...`` lines (lib2nist exports) read as metadata keys; other codes stay in
#: ``synonyms`` as written (``$:00in-source``).
_NIST_SYNON_CODES = {
    "03": "adduct",
    "04": "precursor_mz",
    "05": "collision_energy",
    "06": "instrument_type",
    "07": "instrument",
    "10": "ionization",
    "11": "ionmode",
    "12": "collision_gas",
    "28": "inchikey",
}
_NIST_SYNON_CODE = re.compile(r"\$:(\d\d)(.*)")
_NIST_ION_MODES = {"p": "positive", "n": "negative"}


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


#: Largest m/z a reader accepts; a peak beyond it (or below 0) marks the record as bad.
MAX_READ_MZ = 100_000.0
#: Skipped inputs logged one by one (records per file, molecules per batch, pretraining molecules, decoys); the rest
#: are counted in one line. The one cap of the package and of training.
MAX_LOGGED_PROBLEMS = 10
#: Peaks one record may hold; a record with more is skipped (its peaks are not kept), so that a never-ending
#: record cannot exhaust memory. A unit-resolution EI spectrum has at most about 1,000, a high-resolution one
#: a few thousand.
MAX_PEAKS_PER_RECORD = 100_000


@dataclass(frozen=True)
class RecordProblem:
    """A record a reader skipped: the file, the line of the problem, the record's name and the reason."""

    file: str
    line: int
    record: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} (record {self.record!r}): {self.reason}"


class _Problems:
    """Reports the skipped records of one file: to the caller's list, to the log, or raised."""

    def __init__(self, path: Path, collected: list | None, on_error: str):
        if on_error not in ("skip", "raise"):
            raise ValueError("on_error must be 'skip' or 'raise'")
        self.path = path
        self.collected = collected
        self.on_error = on_error
        self.count = 0

    def report(self, problem: RecordProblem) -> None:
        if self.on_error == "raise":
            raise SpectrumFileError(str(problem))
        self.count += 1
        if self.collected is not None:
            self.collected.append(problem)
        if self.count <= MAX_LOGGED_PROBLEMS:
            logger.warning("skipped %s", problem)

    def close(self) -> None:
        if self.count > MAX_LOGGED_PROBLEMS:
            logger.warning("%s: skipped %d bad records in all", self.path.name, self.count)


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether a file is read through gzip: its name ends in ``.gz``."""
    return Path(path).suffix.lower() == ".gz"


#: Lines that start a record, per file type (lower-cased, leading blanks stripped): what
#: :func:`count_records` counts for progress bars.
RECORD_STARTS = {"msp": (b"name:",), "mgf": (b"begin ions",), "sdf": (b"$$$$",)}


def count_records(path: str | os.PathLike, kind: str) -> int:
    """About how many records a file holds, from one fast pass over its bytes (for a progress bar's total).

    ``kind`` is a key of :data:`RECORD_STARTS` (lines starting a record are counted), ``"lines"`` (non-blank lines
    not starting with ``#``: SMILES files) or ``"rows"`` (non-blank lines less a header: CSV/TSV). Gzip files are
    decompressed on the way. The figure is an estimate: readers may skip or split records.
    """
    opener = gzip.open if is_gzip(path) else open
    count = 0
    starts = RECORD_STARTS.get(kind)
    with opener(path, "rb") as handle:
        for line in handle:
            line = line.lstrip()
            if not line or (kind == "lines" and line.startswith(b"#")):
                continue
            if starts is None or line[:16].lower().startswith(starts):
                count += 1
    return max(count - 1, 0) if kind == "rows" else count


def open_text(path: str | os.PathLike, newline: str | None = None):
    """Open a text file of any encoding met in practice (gzip-compressed when it ends in ``.gz``).

    UTF-16 when it starts with a UTF-16 byte order mark; else UTF-8 (a UTF-8 BOM is dropped) in which bytes
    that are not UTF-8 become lone surrogates (``surrogateescape``), for :func:`decoded_lines` to read as
    Windows-1252. Every reader of spectra and of molecule files opens its input here.
    """
    path = Path(path)
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as handle:
        start = handle.read(2)
    if start in (b"\xff\xfe", b"\xfe\xff"):
        return opener(path, "rt", encoding="utf-16", newline=newline)
    return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline=newline)


#: Longest line :func:`decoded_lines` returns whole (characters); longer lines are cut there, and the rest of
#: the line is read past in pieces of this size, so that one 200 MB line does not take gigabytes.
MAX_LINE_LENGTH = 1_000_000


def decoded_lines(handle, path: Path, max_length: int | None = None) -> Iterator[str]:
    """The lines of a handle from :func:`open_text`, lines that were not UTF-8 read again as Windows-1252.

    With ``max_length``, a longer line is returned as its first 200 characters followed by
    :data:`CUT_LINE_MARK` and its full length (callers report it); memory stays bounded by ``max_length``.
    """
    warned: list = []
    line_number = 0
    while True:
        line = handle.readline(max_length) if max_length else handle.readline()
        if not line:
            return
        line_number += 1
        if max_length and len(line) >= max_length and not line.endswith(("\n", "\r")):
            length = len(line)
            while True:  # read past the rest of the line without keeping it
                rest = handle.readline(max_length)
                length += len(rest)
                if not rest or rest.endswith(("\n", "\r")):
                    break
            line = f"{line[:200]}{CUT_LINE_MARK}{length}\n"
        yield _repaired(line, path, line_number, warned)


#: Placed by :func:`decoded_lines` after the start of a line that was too long, before its length.
CUT_LINE_MARK = "\x00cut line of length "


_SURROGATE = re.compile("[\udc80-\udcff]")


def _repaired(line: str, path: Path, line_number: int, warned: list) -> str:
    """A line with bytes that were not UTF-8, read again as Windows-1252 (latin-1 for its undefined bytes)."""
    if line.isascii() or not _SURROGATE.search(line):
        return line
    if not warned:
        logger.warning("%s:%d: not UTF-8; such lines are read as Windows-1252", path.name, line_number)
        warned.append(line_number)
    raw = line.encode("utf-8", errors="surrogateescape")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_peak_line(line: str, mz_out: list, int_out: list, comments: dict) -> None:
    """Parse one peak line that may hold several pairs and quoted comments.

    Raises
    ------
    ValueError
        For text that is not a number outside the quotes, or an odd number of values.
    """
    if '"' in line or "'" in line:
        # Attach every comment to the pair written just before it.
        position = 0
        for match in _QUOTED.finditer(line):
            _parse_numbers(line[position : match.start()], mz_out, int_out)
            if mz_out:
                comments[mz_out[-1]] = match.group(0)[1:-1]
            position = match.end()
        _parse_numbers(line[position:], mz_out, int_out)
    else:
        _parse_numbers(line, mz_out, int_out)


_NOT_A_NUMBER = re.compile(r"(?:[-+]?(?:nan|inf|infinity))+", re.IGNORECASE)
#: Characters that may separate the numbers of a peak line; anything else but numbers is an error.
_DROP_PEAK_SEPARATORS = str.maketrans("", "", " \t;,:()[]")


def _parse_numbers(text: str, mz_out: list, int_out: list) -> None:
    text = text.replace(":", " ")  # GOLM style "mz:intensity"
    numbers = _NUMBER.findall(text)
    leftover = _NUMBER.sub(" ", text).translate(_DROP_PEAK_SEPARATORS)
    if leftover and _NOT_A_NUMBER.fullmatch(leftover):
        raise ValueError(f"NaN or infinite value in peak line {text.strip()[:80]!r}")
    if leftover:
        raise ValueError(f"non-numeric text {leftover[:20]!r} in peak line {text.strip()[:80]!r}")
    if len(numbers) % 2:
        raise ValueError(f"odd number of values in peak line {text.strip()!r}")
    for i in range(0, len(numbers), 2):
        mz_out.append(float(numbers[i]))
        int_out.append(float(numbers[i + 1]))


_COMMENT_PAIR = re.compile(r'"([^"=]+)=([^"]*)"')


def _parse_comment_pairs(value: str, metadata: dict) -> None:
    """Pull ``"key=value"`` pairs (MoNA / NIST exports put SMILES and InChIKey there) into the metadata."""
    for key, pair_value in _COMMENT_PAIR.findall(value):
        key = _MSP_KEY_ALIASES.get(key.strip().lower(), key.strip().lower().replace(" ", "_"))
        metadata.setdefault(key, pair_value.strip())


def _is_golm_record(metadata: dict) -> bool:
    """Whether a record read so far holds GMD keys (``mst_n``, ``metb``, ``gmd_link``, ...)."""
    return any(key.startswith(("metb", "mst", "gmd")) for key in metadata)


def _store_value(metadata: dict, key: str, value: str, from_synon: bool = False) -> None:
    """Store one ``key: value`` line of an MSP record under its harmonised name.

    Parameters
    ----------
    metadata
        The record's metadata, updated in place.
    key
        The key as written, in lower case (``"num peaks"``, ``"metb inchikey"``).
    value
        The value, stripped.
    from_synon
        The pair was coded in a ``Synon:`` line (GMD): a key already set is kept, and the record is a GMD one.

    Notes
    -----
    GMD keys get matchms's names (:data:`_GOLM_KEY_ALIASES`), ``METB N`` names are added to ``synonyms``,
    and in GMD records the decimal comma of ``RI`` and ``MW`` becomes a point (``986,12`` -> ``986.12``).
    """
    name = _GOLM_KEY_ALIASES.get(key) or _MSP_KEY_ALIASES.get(key) or key.replace(" ", "_")
    if name == "synonyms":
        metadata.setdefault("synonyms", []).append(value)
        return
    if (name in ("retention_index", "nominal_mass") and "," in value and _DECIMAL_COMMA.fullmatch(value)
            and (from_synon or _is_golm_record(metadata))):
        value = value.replace(",", ".")
    if from_synon:
        metadata.setdefault(name, value)
    else:
        metadata[name] = value


def _add_synon(metadata: dict, value: str) -> None:
    """Read one ``Synon:`` line: a coded key (NIST ``$:28<InChIKey>``, GMD ``METB InChIKey: ...``) or a name.

    Coded keys become metadata keys (``inchikey``, ``retention_index``, ``adduct``, ...; a key already set
    by its own line is kept). Names, NIST codes not in :data:`_NIST_SYNON_CODES` and coded lines without a
    value are added to the list ``synonyms`` as written.
    """
    if value.startswith("$:"):
        coded = _NIST_SYNON_CODE.match(value)
        key = _NIST_SYNON_CODES.get(coded.group(1)) if coded else None
        text = coded.group(2).strip() if coded else ""
        if key is not None and text:
            if key == "ionmode":
                text = _NIST_ION_MODES.get(text.lower(), text)
            metadata.setdefault(key, text)
            return
    else:
        code, separator, text = value.partition(":")
        code, text = code.strip().lower(), text.strip()
        if separator and text and (code in _SYNON_MSP_KEYS or (code.split() or [""])[0] in _GOLM_KEY_WORDS):
            _store_value(metadata, code, text, from_synon=True)
            return
    metadata.setdefault("synonyms", []).append(value)


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


class _RecordBuilder:
    """The record being read: metadata, peaks, the line it starts on and the first problem found in it."""

    def __init__(self, start_line: int = 0, check_peaks: bool = True):
        self.start_line = start_line
        self.check_peaks = check_peaks
        self.metadata: dict = {}
        self.mz: list = []
        self.intensities: list = []
        self.comments: dict = {}
        self.in_peaks = False
        self.expected_peaks = -1
        self.named = False  # a Name line was read (MSP): the next one starts a new record
        self.problem: tuple[int, str] | None = None  # (line, reason)

    def __bool__(self) -> bool:
        return bool(self.metadata or self.mz or self.problem)

    @property
    def name(self) -> str:
        return str(self.metadata.get("compound_name") or self.metadata.get("title") or f"starting on line "
                   f"{self.start_line}")

    def fail(self, line_number: int, reason: str) -> None:
        if self.problem is None:
            self.problem = (line_number, reason)

    def add_peak_line(self, line_number: int, line: str) -> None:
        if self.problem is not None:
            return
        pair = _simple_pair(line)
        if pair is not None:
            self.mz.append(pair[0])
            self.intensities.append(pair[1])
        else:
            try:
                _parse_peak_line(line, self.mz, self.intensities, self.comments)
            except ValueError as error:
                if self.check_peaks:
                    self.fail(line_number, str(error))
        self.check_size(line_number)

    def check_size(self, line_number: int) -> None:
        """Fail the record, and drop its peaks, once it holds more than :data:`MAX_PEAKS_PER_RECORD`."""
        if len(self.mz) > MAX_PEAKS_PER_RECORD:
            self.fail(line_number, f"more than {MAX_PEAKS_PER_RECORD:,} peaks: not one spectrum (a record without "
                                   "its end, or several records run together?)")
            self.mz.clear()
            self.intensities.clear()

    def finish(self, path: Path, problems: _Problems, end_line: int, truncated: bool = False
               ) -> SpectrumRecord | None:
        """The record, or ``None`` after reporting why it is skipped."""
        if self.problem is None and truncated and self.check_peaks:
            self.fail(end_line, truncated_reason(self))
        if self.problem is None:
            record = _finish_record(self.metadata, self.mz, self.intensities, self.comments)
            reason = peak_problem(record.mz, record.intensities) if self.check_peaks else None
            if reason is None:
                return record
            self.fail(self.start_line, reason)
        line, reason = self.problem
        problems.report(RecordProblem(path.name, line, self.name, reason))
        return None


def truncated_reason(builder: _RecordBuilder) -> str:
    if builder.expected_peaks >= 0:
        return (f"truncated: the file ends after {len(builder.mz)} of the {builder.expected_peaks} peaks "
                "that Num Peaks announces")
    return "truncated: the file ends inside the record"


def peak_problem(mz: np.ndarray, intensities: np.ndarray) -> str | None:
    """Why peaks cannot be used (NaN or infinite values, negative intensities, m/z out of range), or ``None``."""
    if not (np.isfinite(mz).all() and np.isfinite(intensities).all()):
        return "NaN or infinite m/z or intensity"
    if intensities.size and intensities.min() < 0:
        return f"negative intensity {intensities.min():g} at m/z {mz[np.argmin(intensities)]:g}"
    if mz.size and (mz[0] < 0 or mz[-1] > MAX_READ_MZ):
        bad = mz[0] if mz[0] < 0 else mz[-1]
        return f"m/z {bad:g} outside 0..{MAX_READ_MZ:g}"
    return None


def _finish_record(metadata: dict, mz: list, intensities: list, comments: dict) -> SpectrumRecord:
    mz_array = np.asarray(mz, dtype=np.float64)
    int_array = np.asarray(intensities, dtype=np.float64)
    if mz_array.size > 1 and np.any(np.diff(mz_array) < 0):
        order = np.argsort(mz_array, kind="stable")
        mz_array, int_array = mz_array[order], int_array[order]
    return SpectrumRecord(metadata=metadata, mz=mz_array, intensities=int_array, peak_comments=comments)


_NO_LIMIT = sys.maxsize


def _looks_like_peaks(line: str) -> bool:
    """Whether a line outside a peak list is one (a record without ``Num Peaks``): it parses as peaks."""
    if not (line[0].isdigit() or line[0] == "."):
        return False
    try:
        _parse_peak_line(line, [], [], {})
    except ValueError:
        return False
    return True


def _read_records(body, path: str | os.PathLike, problems: list[RecordProblem] | None, on_error: str,
                  check_peaks: bool) -> Iterator[SpectrumRecord]:
    """Open ``path`` and stream ``body(path, handle, report, check_peaks)``'s records, reporting the skipped ones."""
    path = Path(path)
    report = _Problems(path, problems, on_error)
    with open_text(path) as handle:
        yield from body(path, handle, report, check_peaks)
    report.close()


def iter_msp(path: str | os.PathLike, problems: list[RecordProblem] | None = None, on_error: str = "skip",
             check_peaks: bool = True) -> Iterator[SpectrumRecord]:
    """Stream the records of an MSP file, skipping bad records.

    Parameters
    ----------
    path
        MSP file (NIST export, MassBank, MoNA, or this package's own output).
    problems
        A list that receives a :class:`RecordProblem` for every skipped record.
    on_error
        ``"skip"`` (default): log and skip bad records and go on; ``"raise"``: raise
        :class:`SpectrumFileError` at the first one.
    check_peaks
        ``False`` keeps records whose peaks are bad (for reading only their metadata, e.g. the molecules of
        a library): peak lines that do not parse are left out, and NaN, negative or out-of-range values
        and truncation are not checked.

    Yields
    ------
    SpectrumRecord
        One per good record, in file order. A record is skipped, naming the file, the line and the record,
        when a peak line holds non-numeric text or an odd number of values, when a peak has a NaN or
        infinite value, a negative intensity or an m/z outside ``0..MAX_READ_MZ``, when a line is binary
        (NUL bytes), or when the file ends inside its peak list (a truncated file). Records without
        ``Num Peaks`` are read when their peak lines follow the metadata; records with fewer peaks than
        ``Num Peaks`` announces are kept unless they end the file. ``Name`` need not be a record's first
        line (RIKEN / MS-DIAL exports): a record ends at a blank line, at a second ``Name`` line or at a
        metadata line after its announced peaks. Coded ``Synon:`` lines (NIST ``$:NN``, Golm/GMD
        ``KEY: value``) are read as metadata keys, see :class:`SpectrumRecord`.
    """
    yield from _read_records(_msp_records, path, problems, on_error, check_peaks)


def _msp_records(path: Path, handle, report: _Problems, check_peaks: bool) -> Iterator[SpectrumRecord]:
    """The records of an open MSP file (the body of :func:`iter_msp`)."""
    record = _RecordBuilder(1, check_peaks)
    line_number = 0
    warned: list = []
    # the record's peak lists and how many peaks it may still take, as locals: the peak lines are most lines
    mz, intensities, peak_limit = record.mz, record.intensities, 0
    for line_number, raw_line in enumerate(handle, start=1):
        line = raw_line.strip().lstrip("\ufeff")
        if not line:
            if record:
                finished = record.finish(path, report, line_number)
                if finished is not None:
                    yield finished
            record = _RecordBuilder(line_number + 1, check_peaks)
            mz, intensities, peak_limit = record.mz, record.intensities, 0
            continue
        if "\x00" in line:
            record.fail(line_number, "binary data (NUL bytes): not a text MSP file?")
            continue
        if len(mz) < peak_limit and (line[0] not in "Nn" or line[:5].lower() != "name:"):
            pair = _simple_pair(line) if record.problem is None else None
            if pair is None:
                record.add_peak_line(line_number, line)
            else:  # the common case, inline for speed
                mz.append(pair[0])
                intensities.append(pair[1])
                if len(mz) > MAX_PEAKS_PER_RECORD:
                    record.check_size(line_number)
            continue
        line = _repaired(line, path, line_number, warned)
        key, sep, value = line.partition(":")
        if not sep or (not record.in_peaks and key[:1].isdigit()):
            if not record.in_peaks and _looks_like_peaks(line):  # peaks without a Num Peaks line
                record.in_peaks, peak_limit = True, _NO_LIMIT
                record.add_peak_line(line_number, line)
            continue
        key = key.strip().lower()
        value = value.strip()
        # A new record without a blank separator line: a second Name line, a Name line after the peaks, or a
        # metadata line after all the peaks Num Peaks announced (RIKEN / MS-DIAL records, where Name is not
        # the first line, run together). A Name line after other metadata is the same record's.
        if (key == "name" and (record.named or record.in_peaks)) or (
                record.in_peaks and 0 <= record.expected_peaks <= len(mz) and not key[:1].isdigit()):
            finished = record.finish(path, report, line_number)
            if finished is not None:
                yield finished
            record = _RecordBuilder(line_number, check_peaks)
            mz, intensities, peak_limit = record.mz, record.intensities, 0
        if key == "name":
            record.named = True
        if key == "synon":
            _add_synon(record.metadata, value)
            continue
        if key == "comments" and "=" in value:
            _parse_comment_pairs(value, record.metadata)
        if key == "cas#" and ";" in value:
            # NIST exports put two fields on one line: "CAS#: 64-17-5;  NIST#: 1234"
            value, _, rest = value.partition(";")
            value = value.strip()
            other_key, _, other_value = rest.partition(":")
            if other_value:
                other_key = other_key.strip().lower()
                record.metadata[_MSP_KEY_ALIASES.get(other_key, other_key)] = other_value.strip()
        if key == "num peaks":
            record.in_peaks = True
            try:
                record.expected_peaks = int(float(value))
            except ValueError:
                record.expected_peaks = -1
            peak_limit = record.expected_peaks if record.expected_peaks >= 0 else _NO_LIMIT
        _store_value(record.metadata, key, value)
    if record:
        truncated = record.in_peaks and 0 <= len(record.mz) < record.expected_peaks
        finished = record.finish(path, report, line_number, truncated=truncated)
        if finished is not None:
            yield finished


def iter_mgf(path: str | os.PathLike, problems: list[RecordProblem] | None = None, on_error: str = "skip",
             check_peaks: bool = True) -> Iterator[SpectrumRecord]:
    """Stream the records of an MGF file (``BEGIN IONS`` ... ``END IONS``), skipping bad records.

    ``problems`` and ``on_error`` and the checks of the peaks are as in :func:`iter_msp`; a file that ends
    before ``END IONS`` has a truncated last record.
    """
    yield from _read_records(_mgf_records, path, problems, on_error, check_peaks)


def _mgf_records(path: Path, handle, report: _Problems, check_peaks: bool) -> Iterator[SpectrumRecord]:
    """The records of an open MGF file (the body of :func:`iter_mgf`)."""
    record: _RecordBuilder | None = None
    line_number = 0
    warned: list = []
    for line_number, raw_line in enumerate(handle, start=1):
        line = _repaired(raw_line.strip().lstrip("\ufeff"), path, line_number, warned)
        if not line or line.startswith("#"):
            continue
        upper = line.upper()
        if upper == "BEGIN IONS":
            if record is not None:
                record.fail(line_number, "no END IONS before the next BEGIN IONS")
                record.finish(path, report, line_number)
            record = _RecordBuilder(line_number, check_peaks)
            continue
        if upper == "END IONS":
            if record is not None:
                finished = record.finish(path, report, line_number)
                if finished is not None:
                    yield finished
            record = None
            continue
        if record is None:
            continue
        if "\x00" in line:
            record.fail(line_number, "binary data (NUL bytes): not a text MGF file?")
            continue
        if "=" in line and not line[0].isdigit():
            key, _, value = line.partition("=")
            key = key.strip().lower()
            if key == "title" and "compound_name" not in record.metadata:
                record.metadata["compound_name"] = value.strip()
            record.metadata[_MSP_KEY_ALIASES.get(key, key)] = value.strip()
            continue
        record.add_peak_line(line_number, line)
    if record is not None:
        finished = record.finish(path, report, line_number, truncated=True)
        if finished is not None:  # only when the peaks are not checked
            yield finished


def write_problems(problems: Iterable[RecordProblem], path: str | os.PathLike) -> Path:
    """Write skipped records as a TSV (columns ``file``, ``line``, ``record``, ``reason``), atomically."""
    path = Path(path)
    with atomic_output(path) as handle:
        handle.write("file\tline\trecord\treason\n")
        for problem in problems:
            fields = (problem.file, str(problem.line), problem.record, problem.reason)
            handle.write("\t".join(field.replace("\t", " ").replace("\n", " ") for field in fields) + "\n")
    return path


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


#: Characters that would end or corrupt a metadata line when written raw: C0 controls (NUL, CR, LF, tab, ...),
#: DEL, and the separators Python's ``str.splitlines`` also breaks at (NEL, U+2028, U+2029).
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line_text(value) -> str:
    """A metadata value as one line of text: each line-breaking or control character becomes a space, so the
    file reads back with the same records (a name ``"benz\\r41 999\\rene"`` would otherwise add a peak line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):  # e.g. a predicted spectrum's expert_weights: comma-separated values
        return ",".join(one_line_text(item) for item in value)
    return _LINE_BREAKING.sub(" ", str(value))


class _IntegerText:
    """Text of non-negative integers from lookup tables, grown on demand: the peak lines of unit-resolution spectra
    (integer m/z, intensities 0..999) without one number conversion per value."""

    def __init__(self, size: int = 1001):
        self._text: list[str] = []
        self._spaced: list[str] = []  # "12 ": an m/z and the space after it
        self._grow(size - 1)

    def _grow(self, largest: int) -> None:
        numbers = range(len(self._text), largest + 1)
        self._text.extend(str(i) for i in numbers)
        self._spaced.extend(f"{i} " for i in numbers)

    def peak_lines(self, mz: list[int], intensities: list[int]) -> str | None:
        """The lines of non-negative integer peaks; ``None`` for other values (floats, or above the tables' limit)."""
        try:
            spaced, text = self._spaced, self._text
            return "\n".join([spaced[m] + text[i] for m, i in zip(mz, intensities)]) + "\n"
        except TypeError:  # not integers
            return None
        except IndexError:
            largest = max(max(mz), max(intensities))
            if largest > _INTEGER_TEXT_LIMIT:
                return None
            self._grow(largest)
            return self.peak_lines(mz, intensities)


_INTEGER_TEXT = _IntegerText()
_INTEGER_TEXT_LIMIT = 100_000  # larger integers (raw intensities) are converted one by one, not tabled


def _integral(values: np.ndarray) -> bool:
    return bool(values.size) and bool(np.all(values == np.round(values)))


def peak_lines(mz, intensities) -> str:
    """The peak lines of a record, each ending with a newline: integers as integers (unit resolution, the
    library's 0..999 intensities), other m/z with 4 decimals and other intensities with 4 significant digits.

    Lists of non-negative Python integers (what the library builder writes) go straight to the lookup tables,
    without a conversion to arrays (which took twice as long for the 22,870 NIST 17 predictions).
    """
    if type(mz) is list and type(intensities) is list and mz and min(mz) >= 0 and min(intensities) >= 0:
        tabled = _INTEGER_TEXT.peak_lines(mz, intensities)
        if tabled is not None:
            return tabled
    mz, intensities = np.asarray(mz), np.asarray(intensities)
    mz_integral, intensities_integral = _integral(mz), _integral(intensities)
    if mz_integral and intensities_integral and min(mz.min(), intensities.min()) >= 0:
        tabled = _INTEGER_TEXT.peak_lines(mz.astype(np.int64).tolist(), intensities.astype(np.int64).tolist())
        if tabled is not None:
            return tabled
    mz_text = [str(int(v)) for v in mz] if mz_integral else [f"{v:.4f}" for v in mz]
    int_text = [str(int(v)) for v in intensities] if intensities_integral else [f"{v:.4g}" for v in intensities]
    return "".join([f"{m} {i}\n" for m, i in zip(mz_text, int_text)])


def msp_header(metadata: dict) -> str:
    """The metadata lines of an MSP record (``Name:`` first), each ending with a newline."""
    lines = []
    for key, label in _MSP_HEADER_KEYS:
        value = metadata.get(key)
        if value not in (None, ""):
            lines.append(f"{label}: {one_line_text(value)}\n")
    for synonym in metadata.get("synonyms", []) or []:
        lines.append(f"Synon: {one_line_text(synonym)}\n")
    written = {key for key, _ in _MSP_HEADER_KEYS} | _SKIPPED_KEYS
    for key, value in metadata.items():
        if key not in written and value not in (None, ""):
            lines.append(f"{one_line_text(key)}: {one_line_text(value)}\n")
    return "".join(lines)


def format_msp_record(metadata: dict, mz, intensities) -> str:
    """Format one record as NIST-style MSP text (``Name:`` first, ``Num Peaks:`` then one peak per line)."""
    return "".join((msp_header(metadata), "Num Peaks: ", str(len(mz)), "\n", peak_lines(mz, intensities), "\n"))


def mgf_header(metadata: dict) -> str:
    """``BEGIN IONS`` and the metadata lines of an MGF record, each ending with a newline."""
    title = metadata.get("compound_name") or metadata.get("spectrum_id") or metadata.get("inchikey") or ""
    lines = ["BEGIN IONS\n", f"TITLE={one_line_text(title)}\n"]
    for key, value in metadata.items():
        if key in _SKIPPED_KEYS or key == "title" or value in (None, ""):
            continue
        lines.append(f"{one_line_text(key).upper()}={one_line_text(value)}\n")
    return "".join(lines)


def format_mgf_record(metadata: dict, mz, intensities) -> str:
    """Format one record as MGF text."""
    return "".join((mgf_header(metadata), peak_lines(mz, intensities), "END IONS\n\n"))


def format_record(file_format: str, metadata: dict, mz, intensities) -> str:
    """One record as ``"msp"`` or ``"mgf"`` text (:func:`format_msp_record`, :func:`format_mgf_record`): the one
    writer of both formats, used by :func:`write_spectra` and the library builder."""
    return (format_msp_record if file_format == "msp" else format_mgf_record)(metadata, mz, intensities)


def as_record(item: Spectrum | SpectrumRecord) -> SpectrumRecord:
    """A :class:`SpectrumRecord` as it is, or a :class:`matchms.Spectrum` as one; a ``TypeError`` for anything else."""
    if isinstance(item, SpectrumRecord):
        return item
    if isinstance(item, Spectrum):
        return spectrum_to_record(item)
    raise TypeError(f"expected a matchms Spectrum or a SpectrumRecord, got {type(item).__name__}")


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
