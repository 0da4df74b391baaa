"""What the MSP and MGF readers share: peak-line parsing, the record being read and its checks, and the
streaming of one file's records with its problems reported.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from matchms_neims.io.records import RecordProblems, SpectrumRecord
from matchms_neims.io.text_files import open_text
from matchms_neims.problems import RecordProblem

_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")
# MSP keys that are renamed to matchms harmonised names by this reader (matchms handles the rest).
MSP_KEY_ALIASES = {
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
#: Largest m/z a reader accepts; a peak beyond it (or below 0) marks the record as bad.
MAX_READ_MZ = 100_000.0
#: Peaks one record may hold; a record with more is skipped (its peaks are not kept), so that a never-ending
#: record cannot exhaust memory. A unit-resolution EI spectrum has at most about 1,000, a high-resolution one
#: a few thousand.
MAX_PEAKS_PER_RECORD = 100_000


def parse_peak_line(line: str, mz_out: list, int_out: list, comments: dict) -> None:
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


def simple_peak_pair(line: str) -> tuple[float, float] | None:
    """The pair of a plain ``"mz intensity"`` peak line (the common case, parsed fast); ``None`` for others."""
    parts = line.split()
    if len(parts) != 2:
        return None
    try:
        pair = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return pair if math.isfinite(pair[0]) and math.isfinite(pair[1]) else None


class RecordBuilder:
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
        self.max_peaks = MAX_PEAKS_PER_RECORD  # read here, so that the one constant bounds every reader

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
        pair = simple_peak_pair(line)
        if pair is not None:
            self.mz.append(pair[0])
            self.intensities.append(pair[1])
        else:
            try:
                parse_peak_line(line, self.mz, self.intensities, self.comments)
            except ValueError as error:
                if self.check_peaks:
                    self.fail(line_number, str(error))
        self.check_size(line_number)

    def check_size(self, line_number: int) -> None:
        """Fail the record, and drop its peaks, once it holds more than :data:`MAX_PEAKS_PER_RECORD`."""
        if len(self.mz) > self.max_peaks:
            self.fail(line_number, f"more than {self.max_peaks:,} peaks: not one spectrum (a record without "
                                   "its end, or several records run together?)")
            self.mz.clear()
            self.intensities.clear()

    def finish(self, path: Path, problems: RecordProblems, end_line: int, truncated: bool = False
               ) -> SpectrumRecord | None:
        """The record, or ``None`` after reporting why it is skipped."""
        if self.problem is None and truncated and self.check_peaks:
            self.fail(end_line, truncated_reason(self))
        if self.problem is None:
            record = finish_record(self.metadata, self.mz, self.intensities, self.comments)
            reason = peak_problem(record.mz, record.intensities) if self.check_peaks else None
            if reason is None:
                return record
            self.fail(self.start_line, reason)
        line, reason = self.problem
        problems.report(RecordProblem(self.name, reason, file=path.name, line=line))
        return None


def truncated_reason(builder: RecordBuilder) -> str:
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


def finish_record(metadata: dict, mz: list, intensities: list, comments: dict) -> SpectrumRecord:
    mz_array = np.asarray(mz, dtype=np.float64)
    int_array = np.asarray(intensities, dtype=np.float64)
    if mz_array.size > 1 and np.any(np.diff(mz_array) < 0):
        order = np.argsort(mz_array, kind="stable")
        mz_array, int_array = mz_array[order], int_array[order]
    return SpectrumRecord(metadata=metadata, mz=mz_array, intensities=int_array, peak_comments=comments)


NO_PEAK_LIMIT = sys.maxsize


def looks_like_peaks(line: str) -> bool:
    """Whether a line outside a peak list is one (a record without ``Num Peaks``): it parses as peaks."""
    if not (line[0].isdigit() or line[0] == "."):
        return False
    try:
        parse_peak_line(line, [], [], {})
    except ValueError:
        return False
    return True


def read_records(body, path: str | os.PathLike, problems: list[RecordProblem] | None, on_error: str,
                  check_peaks: bool) -> Iterator[SpectrumRecord]:
    """Open ``path`` and stream ``body(path, handle, report, check_peaks)``'s records, reporting the skipped ones."""
    path = Path(path)
    report = RecordProblems(path, problems, on_error)
    with open_text(path) as handle:
        yield from body(path, handle, report, check_peaks)
    report.close()
