"""Opening text inputs: gzip, UTF-8 with Windows-1252 and UTF-16 fallbacks, over-long and binary lines, and a
fast count of the records of a file for progress bars.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


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
        yield repaired_line(line, path, line_number, warned)


#: Placed by :func:`decoded_lines` after the start of a line that was too long, before its length.
CUT_LINE_MARK = "\x00cut line of length "
_SURROGATE = re.compile("[\udc80-\udcff]")


def repaired_line(line: str, path: Path, line_number: int, warned: list) -> str:
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
