"""Reading MGF files (``BEGIN IONS`` ... ``END IONS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from matchms_neims.io.record_reading import MSP_KEY_ALIASES, RecordBuilder, read_records
from matchms_neims.io.records import RecordProblems, SpectrumRecord
from matchms_neims.io.text_files import repaired_line
from matchms_neims.problems import RecordProblem


def iter_mgf(path: str | os.PathLike, problems: list[RecordProblem] | None = None, on_error: str = "skip",
             check_peaks: bool = True) -> Iterator[SpectrumRecord]:
    """Stream the records of an MGF file (``BEGIN IONS`` ... ``END IONS``), skipping bad records.

    ``problems`` and ``on_error`` and the checks of the peaks are as in :func:`iter_msp`; a file that ends
    before ``END IONS`` has a truncated last record.
    """
    yield from read_records(_mgf_records, path, problems, on_error, check_peaks)


def _mgf_records(path: Path, handle, report: RecordProblems, check_peaks: bool) -> Iterator[SpectrumRecord]:
    """The records of an open MGF file (the body of :func:`iter_mgf`)."""
    record: RecordBuilder | None = None
    line_number = 0
    warned: list = []
    for line_number, raw_line in enumerate(handle, start=1):
        line = repaired_line(raw_line.strip().lstrip("\ufeff"), path, line_number, warned)
        if not line or line.startswith("#"):
            continue
        upper = line.upper()
        if upper == "BEGIN IONS":
            if record is not None:
                record.fail(line_number, "no END IONS before the next BEGIN IONS")
                record.finish(path, report, line_number)
            record = RecordBuilder(line_number, check_peaks)
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
            record.metadata[MSP_KEY_ALIASES.get(key, key)] = value.strip()
            continue
        record.add_peak_line(line_number, line)
    if record is not None:
        finished = record.finish(path, report, line_number, truncated=True)
        if finished is not None:  # only when the peaks are not checked
            yield finished
