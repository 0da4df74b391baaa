"""A binary, memory-mapped library index: a spectral library binned and weighted once, searched many times.

``matchms-neims index LIBRARY.msp -o LIBRARY.nidx`` (:func:`build_index`) reads an MSP/MGF library once, bins
and weights every spectrum exactly as :class:`~matchms_neims.spectral_matrix.SpectralMatrix` does, and stores the
weighted, L2-normalised unit vectors with what hits need: name, InChIKey, SMILES and spectrum_id, nominal mass,
the peaks above ``max_mz``, the settings (``max_mz``, ``mz_power``, ``intensity_power``) and the SHA-256 and size
of the source file. :func:`~matchms_neims.search.search_library` and ``matchms-neims search`` accept the index
wherever they accept an MSP/MGF library, and give the same hits; they read it through one memory map, block by
block, so that an index larger than the machine's memory can be searched.

File layout (version 1; little-endian, every array aligned to 64 bytes)::

    header    8 bytes "NEIMSIDX", uint32 format version, zero padding to 64 bytes
    chunks    one per block of ``chunk_rows`` spectra, written as the source is read; each chunk holds
                indptr        int64[rows + 1]      CSR row pointers (from 0 within the chunk)
                indices       uint16[nnz]          nominal m/z of each stored bin (int32 when max_mz > 65535)
                values        float32|float16[nnz] weighted, normalised intensity of that bin
                masses        float64[rows]        nominal molecular mass (NaN where unknown)
                above_max_mz  int32[rows]          peaks above max_mz, not compared
                text_offsets  int64[4 * rows + 1]  byte offsets of name, inchikey, smiles, spectrum_id per row
                text          uint8[...]           those strings, UTF-8
    footer    JSON: format, version, settings, dtype, source (path, size, sha256), counts, and per chunk its
              rows and each array's (offset, count, CRC-32)
    trailer   32 bytes: "NIDXEND\\0", uint64 footer offset, uint64 footer length, uint32 footer CRC-32,
              uint32 format version

The bins a spectrum has (CSR structure) are its peaks, so the matched-peak counts come from the same arrays as
the scores; a bin whose weight is 0 (m/z 0 with ``mz_power > 0``) is stored as an explicit zero. EI spectra fill
about 8% of the unit bins (80 of 1,001 for the NIST 17 predictions), so the CSR arrays take 6 bytes per peak
(4 with ``float16``) where dense float32 rows would take 4,004 bytes per spectrum.

A chunk is a row range with its own arrays and checksums: it is the unit a reader verifies (CRC-32, on first
use). It is meant as the unit of the follow-ups too: a sharded search hands row ranges of whole chunks to its
processes (:meth:`LibraryIndex.iter_blocks` takes ``start``/``stop``; :meth:`LibraryIndex.chunk_rows`), and an
approximate (FAISS) index is trained from the same dense blocks. A library split over several index files (one
per ``predict`` shard) would be searched file after file with library indices offset by the rows before; that
is not implemented yet.

Search reads the index through one read-only memory map: each block is scattered into a dense float32 block
(reused from block to block), the next block's pages are read ahead (``MADV_WILLNEED``) and a finished block's
pages are dropped from the process's resident memory (``MADV_DONTNEED``; they stay in the page cache), so the
peak RSS of a search depends on ``library_block_size``, not on the size of the index.

Building is streamed (one chunk of records in memory), atomic (the file is written under a temporary name
beside the output and renamed when complete; an error or interrupt removes it, and the temporary files of
killed runs are removed by the next run) and safe to restart: a rerun starts over, and an index whose source
file (SHA-256 and size) and settings are unchanged is kept as it is unless ``force``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER
from matchms_neims.spectral_matrix import SEARCH_MAX_MZ, SpectralMatrix, iter_spectra_blocks, spectra_file_size
from matchms_neims.utils import atomic_path, file_sha256

logger = logging.getLogger(__name__)

#: Suffix of index files written beside a library (``predict --index``, ``index`` without ``-o``).
INDEX_SUFFIX = ".nidx"
MAGIC = b"NEIMSIDX"
TRAILER_MAGIC = b"NIDXEND\x00"
FORMAT_VERSION = 1
FORMAT_NAME = "matchms-neims library index"
#: Spectra per chunk: binned together while building, verified together when read.
DEFAULT_CHUNK_ROWS = 16384
VALUE_DTYPES = ("float32", "float16")
TEXT_FIELDS = ("name", "inchikey", "smiles", "spectrum_id")

_ALIGN = 64
_HEADER = struct.Struct("<8sI")
_TRAILER = struct.Struct("<8sQQII")
_ARRAYS = ("indptr", "indices", "values", "masses", "above_max_mz", "text_offsets", "text")
_CSR_ARRAYS = ("indptr", "indices", "values")
_TEXT_ERRORS = "surrogatepass"  # metadata read with surrogateescape round-trips


class LibraryIndexError(ValueError):
    """A library index file cannot be used: not an index, truncated, damaged or built with other settings."""


def is_library_index(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (or claims to be) a library index: a file starting with the index's magic bytes, or
    named ``*.nidx`` (so that a damaged index is reported as one instead of being read as an MSP file)."""
    if isinstance(path, str | os.PathLike) and not isinstance(path, bytes):
        path = Path(path)
        if path.suffix.lower() == INDEX_SUFFIX:
            return True
        try:
            with open(path, "rb") as handle:
                return handle.read(len(MAGIC)) == MAGIC
        except OSError:
            return False
    return False


def default_index_path(library: str | os.PathLike) -> Path:
    """The index written beside a library: ``lib.msp`` (or ``lib.msp.gz``, ``lib.mgf``) -> ``lib.nidx``."""
    path = Path(library)
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return path.with_name(stem + INDEX_SUFFIX)


# --------------------------------------------------------------------------------------------- writing


@dataclass
class IndexSummary:
    """What :func:`build_index` did.

    Attributes
    ----------
    path, source
        The index written (or kept) and the library it was built from.
    n_spectra, nnz
        Spectra indexed and bins stored.
    skipped_records
        Source records skipped as unreadable (listed in the log, or in ``errors_path``).
    file_size
        Bytes of the index.
    seconds
        Time taken.
    up_to_date
        True when an index of the same source and settings was already there and was kept.
    """

    path: Path
    source: Path
    n_spectra: int
    nnz: int
    skipped_records: int
    file_size: int
    seconds: float
    dtype: str
    up_to_date: bool = False

    def __str__(self) -> str:
        if self.up_to_date:
            return f"{self.path} is up to date with {self.source} ({self.n_spectra:,} spectra); kept"
        per_spectrum = self.nnz / self.n_spectra if self.n_spectra else 0.0
        text = (f"indexed {self.n_spectra:,} spectra of {self.source} into {self.path} "
                f"({self.file_size / 1e6:.1f} MB, {self.dtype}, {per_spectrum:.1f} peaks per spectrum) "
                f"in {self.seconds:.1f} s")
        if self.skipped_records:
            text += f"; {self.skipped_records:,} unreadable records skipped"
        return text


def _padding(offset: int) -> bytes:
    return b"\0" * (-offset % _ALIGN)


def _encode_text(metadata: Sequence[dict]) -> tuple[np.ndarray, bytes]:
    """The four text fields of each row as one UTF-8 byte string and its ``4 * rows + 1`` offsets."""
    parts = [str(row[key]).encode("utf-8", _TEXT_ERRORS) for row in metadata for key in TEXT_FIELDS]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(part) for part in parts], out=offsets[1:])
    return offsets, b"".join(parts)


def _encode_chunk(block: SpectralMatrix, value_dtype: np.dtype, index_dtype: np.dtype) -> dict[str, np.ndarray]:
    """The arrays of one chunk (see the module docstring) from a block of binned spectra."""
    rows, columns = np.nonzero(block.peaks)  # row-major: sorted by row, then m/z
    indptr = np.zeros(len(block) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(block)), out=indptr[1:])
    text_offsets, text = _encode_text(block.metadata)
    return {
        "indptr": indptr,
        "indices": columns.astype(index_dtype),
        "values": block.vectors[rows, columns].astype(value_dtype),
        "masses": np.ascontiguousarray(block.masses, dtype="<f8"),
        "above_max_mz": np.ascontiguousarray(block.above_max_mz, dtype="<i4"),
        "text_offsets": text_offsets,
        "text": np.frombuffer(text, dtype=np.uint8),
    }


def _write_array(handle, array: np.ndarray) -> list[int]:
    """Append one array (aligned); its ``[offset, count, crc32]``."""
    handle.write(_padding(handle.tell()))
    offset = handle.tell()
    data = np.ascontiguousarray(array).tobytes()
    handle.write(data)
    return [offset, int(array.size), zlib.crc32(data)]


def _source_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def build_index(
    library: str | os.PathLike,
    output: str | os.PathLike | None = None,
    max_mz: int = SEARCH_MAX_MZ,
    mz_power: float = NEIMS_MZ_POWER,
    intensity_power: float = NEIMS_INTENSITY_POWER,
    dtype: str = "float32",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    errors_path: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = False,
) -> IndexSummary:
    """Write the library index of an MSP/MGF library (streamed, atomic).

    Parameters
    ----------
    library
        The MSP or MGF library (optionally ``.gz``). Unreadable records are skipped, as ``search`` skips them,
        so the index numbers the spectra as a search of the file does (``library_index``).
    output
        The index file; by default beside the library with the suffix ``.nidx`` (:func:`default_index_path`).
    max_mz, mz_power, intensity_power
        The search settings the vectors are made for (those of :func:`~matchms_neims.search.search_library`);
        a search with other settings refuses the index.
    dtype
        ``"float32"`` (default: scores equal those from the MSP file) or ``"float16"`` (a quarter smaller; scores
        within about 3e-4, see docs/performance.md).
    chunk_rows
        Spectra binned and written together; memory while building is about ``13 * chunk_rows * (max_mz + 1)``
        bytes.
    errors_path
        When given, the unreadable records of the library (file, line, record, reason) are written there (TSV).
        Only reading the file finds them, so the index is then rebuilt even when it is up to date.
    force
        Rebuild even when ``output`` is already an index of the same source file (SHA-256 and size) with the
        same settings and dtype; without it (and without ``errors_path``) such an index is kept.
    progress
        Show a progress bar of the records indexed.

    Returns
    -------
    IndexSummary

    Raises
    ------
    LibraryIndexError
        When the library changes while it is being indexed (nothing is written then).
    """
    from matchms_neims.io import iter_records, write_problems

    start_time = time.perf_counter()
    source = Path(library)
    output = default_index_path(source) if output is None else Path(output)
    if dtype not in VALUE_DTYPES:
        raise ValueError(f"dtype must be one of {VALUE_DTYPES}, got {dtype!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if max_mz < 0:
        raise ValueError(f"max_mz must be >= 0, got {max_mz}")
    if is_library_index(source):
        raise ValueError(f"{source} is already a library index; index an MSP or MGF library")
    before = _source_state(source)  # FileNotFoundError names the file
    sha256 = file_sha256(source)
    settings = {"max_mz": int(max_mz), "mz_power": float(mz_power), "intensity_power": float(intensity_power)}
    if not force and errors_path is None and output.exists():  # --errors needs the records read: rebuilt
        kept = _current_index(output, before[0], sha256, settings, dtype)
        if kept is not None:
            summary = IndexSummary(output, source, len(kept), kept.nnz, kept.source.get("skipped_records", 0),
                                   output.stat().st_size, time.perf_counter() - start_time, dtype, up_to_date=True)
            kept.close()
            return summary
    value_dtype = np.dtype(dtype).newbyteorder("<")
    index_dtype = np.dtype("<u2" if max_mz <= np.iinfo(np.uint16).max else "<i4")
    problems: list = []
    chunks: list[dict] = []
    n_spectra = nnz = above_peaks = above_records = 0
    max_column = -1
    total = spectra_file_size(source) if progress else None
    bar = tqdm(total=total, unit="spectra", desc="indexing", disable=not progress, dynamic_ncols=True)
    try:
        with atomic_path(output) as tmp, open(tmp, "wb") as handle:
            handle.write(_HEADER.pack(MAGIC, FORMAT_VERSION))
            records = iter_records(source, problems)
            for block in iter_spectra_blocks(records, chunk_rows, max_mz, mz_power, intensity_power):
                if not len(block) and chunks:
                    continue
                arrays = _encode_chunk(block, value_dtype, index_dtype)
                table = {name: _write_array(handle, arrays[name]) for name in _ARRAYS}
                chunks.append({"rows": len(block), "arrays": table})
                n_spectra += len(block)
                nnz += int(arrays["indices"].size)
                if arrays["indices"].size:
                    max_column = max(max_column, int(arrays["indices"].max()))
                above_peaks += int(block.above_max_mz.sum())
                above_records += int(np.count_nonzero(block.above_max_mz))
                bar.update(len(block))
            if _source_state(source) != before:
                raise LibraryIndexError(f"{source} changed while it was being indexed; index it again")
            footer = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "created_by": f"matchms-neims {_package_version()}",
                "settings": settings,
                "dtype": dtype,
                "index_dtype": index_dtype.name,
                "n_spectra": n_spectra,
                "nnz": nnz,
                "max_column": max_column,
                "above_max_mz": {"peaks": above_peaks, "records": above_records},
                "source": {"path": str(source.resolve()), "name": source.name, "size": before[0],
                           "sha256": sha256, "skipped_records": len(problems)},
                "chunks": chunks,
            }
            data = json.dumps(footer, separators=(",", ":")).encode("utf-8")
            handle.write(_padding(handle.tell()))
            footer_offset = handle.tell()
            handle.write(data)
            handle.write(_TRAILER.pack(TRAILER_MAGIC, footer_offset, len(data), zlib.crc32(data), FORMAT_VERSION))
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        bar.close()
    if errors_path is not None:
        write_problems(problems, errors_path)
    return IndexSummary(output, source, n_spectra, nnz, len(problems), output.stat().st_size,
                        time.perf_counter() - start_time, dtype)


def _current_index(path: Path, size: int, sha256: str, settings: dict, dtype: str) -> LibraryIndex | None:
    """The index at ``path`` if it is readable and was built from this source with these settings, else None."""
    try:
        index = LibraryIndex(path)
    except (LibraryIndexError, OSError):
        return None
    if (index.source.get("sha256") == sha256 and index.source.get("size") == size
            and index.info["settings"] == settings and index.dtype == dtype):
        return index
    index.close()
    return None


def _package_version() -> str:
    from matchms_neims import __version__

    return __version__


# --------------------------------------------------------------------------------------------- reading


class IndexMetadata(Sequence):
    """The metadata dicts (name, inchikey, smiles, spectrum_id) of rows ``start..stop`` of an index, decoded
    when asked for, so that a block of a million rows costs nothing until its hits are looked up."""

    def __init__(self, index: LibraryIndex, start: int, stop: int) -> None:
        self._index, self._start, self._stop = index, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        position = int(item)
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(f"row {item} outside 0..{len(self) - 1}")
        return self._index.metadata(self._start + position)


class LibraryIndex:
    """A library index file opened for reading (memory-mapped; see the module docstring).

    Opening checks the header, the trailer, the footer's checksum and that every array lies inside the file,
    so a truncated or overwritten file is refused at once; each chunk's arrays are checked against their
    CRC-32 the first time the chunk is read. Every error names the file.

    Parameters
    ----------
    path
        The index file.

    Attributes
    ----------
    path
        The file.
    info
        The footer (format, version, settings, dtype, source, counts, chunk table).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            handle = open(self.path, "rb")
        except IsADirectoryError:
            raise LibraryIndexError(f"{self.path}: is a directory, not a library index") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if size < _ALIGN + _TRAILER.size:
                raise self._error(f"truncated or empty ({size} bytes), not a complete library index")
            magic, version = _HEADER.unpack(handle.read(_HEADER.size))
            if magic != MAGIC:
                raise self._error("not a matchms-neims library index (wrong magic bytes); build one with "
                                  "`matchms-neims index LIBRARY.msp -o INDEX.nidx`")
            if version != FORMAT_VERSION:
                raise self._error(f"library index format version {version}; this matchms-neims reads version "
                                  f"{FORMAT_VERSION}; rebuild the index")
            self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self._size = size
        self.info = self._read_footer()
        self._check_table()
        self._verified: set[int] = set()

    # ------------------------------------------------------------------ opening

    def _error(self, reason: str) -> LibraryIndexError:
        return LibraryIndexError(f"{self.path}: {reason}")

    def _read_footer(self) -> dict:
        incomplete = "truncated or incomplete library index (its end marker is missing: was the build interrupted, " \
                     "or the file cut short?); rebuild it"
        magic, offset, length, crc, version = _TRAILER.unpack_from(self._mmap, self._size - _TRAILER.size)
        if magic != TRAILER_MAGIC or version != FORMAT_VERSION:
            raise self._error(incomplete)
        if offset < _ALIGN or offset + length != self._size - _TRAILER.size:
            raise self._error("damaged library index (its footer lies outside the file); rebuild it")
        data = self._mmap[offset:offset + length]
        if zlib.crc32(data) != crc:
            raise self._error("damaged library index (its footer fails its checksum); rebuild it")
        try:
            info = json.loads(data.decode("utf-8"))
            settings = info["settings"]
            info["settings"] = {"max_mz": int(settings["max_mz"]), "mz_power": float(settings["mz_power"]),
                                "intensity_power": float(settings["intensity_power"])}
            info["n_spectra"], info["nnz"] = int(info["n_spectra"]), int(info["nnz"])
            if info["dtype"] not in VALUE_DTYPES or info["index_dtype"] not in ("uint16", "int32"):
                raise ValueError(f"unknown dtypes {info['dtype']!r}, {info['index_dtype']!r}")
            for chunk in info["chunks"]:
                chunk["rows"] = int(chunk["rows"])
                if set(chunk["arrays"]) != set(_ARRAYS):
                    raise ValueError(f"chunk arrays {sorted(chunk['arrays'])}")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise self._error(f"damaged library index (unreadable footer: {error}); rebuild it") from None
        if info.get("format") != FORMAT_NAME:
            raise self._error(f"not a matchms-neims library index (format {info.get('format')!r})")
        self._footer_offset = offset
        return info

    def _check_table(self) -> None:
        """Every array inside the data area, with the sizes its chunk's row count implies."""
        self._value_dtype = np.dtype(self.info["dtype"]).newbyteorder("<")
        self._index_dtype = np.dtype("<u2" if self.info["index_dtype"] == "uint16" else "<i4")
        dtypes = {"indptr": np.dtype("<i8"), "indices": self._index_dtype, "values": self._value_dtype,
                  "masses": np.dtype("<f8"), "above_max_mz": np.dtype("<i4"), "text_offsets": np.dtype("<i8"),
                  "text": np.dtype(np.uint8)}
        self._dtypes = dtypes
        starts = [0]
        nnz = 0
        for number, chunk in enumerate(self.info["chunks"]):
            rows, arrays = chunk["rows"], chunk["arrays"]
            expected = {"indptr": rows + 1, "masses": rows, "above_max_mz": rows, "text_offsets": 4 * rows + 1,
                        "indices": arrays["values"][1]}
            for name, (offset, count, _crc) in arrays.items():
                end = offset + count * dtypes[name].itemsize
                if name in expected and count != expected[name] or not (_ALIGN <= offset <= end
                                                                         <= self._footer_offset):
                    raise self._error(f"damaged library index (chunk {number}: array {name!r} does not fit "
                                      f"the file); rebuild it")
            starts.append(starts[-1] + rows)
            nnz += arrays["values"][1]
        if starts[-1] != self.info["n_spectra"] or nnz != self.info["nnz"]:
            raise self._error(f"damaged library index (its chunks hold {starts[-1]} spectra, {nnz} bins; the footer "
                              f"says {self.info['n_spectra']}, {self.info['nnz']}); rebuild it")
        self._starts = np.array(starts, dtype=np.int64)

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return self.info["n_spectra"]

    def __repr__(self) -> str:
        return f"LibraryIndex({str(self.path)!r}, n={len(self)}, settings={self.settings}, dtype={self.dtype})"

    def __enter__(self) -> LibraryIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def settings(self) -> tuple[int, float, float]:
        """``(max_mz, mz_power, intensity_power)``, as :attr:`SpectralMatrix.settings`."""
        settings = self.info["settings"]
        return settings["max_mz"], settings["mz_power"], settings["intensity_power"]

    @property
    def max_mz(self) -> int:
        return self.settings[0]

    @property
    def dtype(self) -> str:
        """Storage type of the vector values, ``"float32"`` or ``"float16"``."""
        return self.info["dtype"]

    @property
    def nnz(self) -> int:
        """Bins stored (peaks of all spectra)."""
        return self.info["nnz"]

    @property
    def source(self) -> dict:
        """The library the index was built from: ``path``, ``name``, ``size``, ``sha256``, ``skipped_records``."""
        return self.info["source"]

    @property
    def n_chunks(self) -> int:
        return len(self.info["chunks"])

    def chunk_rows(self, number: int) -> tuple[int, int]:
        """Rows ``(start, stop)`` of chunk ``number`` (the unit of verification and of sharding)."""
        return int(self._starts[number]), int(self._starts[number + 1])

    def close(self) -> None:
        """Release the memory map (left to the garbage collector while arrays read from it are still alive)."""
        with contextlib.suppress(BufferError, ValueError):
            self._mmap.close()

    # ------------------------------------------------------------------ arrays

    def _array(self, number: int, name: str) -> np.ndarray:
        offset, count, _crc = self.info["chunks"][number]["arrays"][name]
        return np.frombuffer(self._mmap, dtype=self._dtypes[name], count=count, offset=offset)

    def _verify_chunk(self, number: int) -> None:
        """Check chunk ``number``'s arrays against their CRC-32 and its structure (once per chunk)."""
        if number in self._verified:
            return
        start, stop = self.chunk_rows(number)
        where = f"chunk {number} (spectra {start}..{stop - 1})"
        for name, (offset, count, crc) in self.info["chunks"][number]["arrays"].items():
            if zlib.crc32(self._mmap[offset:offset + count * self._dtypes[name].itemsize]) != crc:
                raise self._error(f"damaged library index: {where}, array {name!r} fails its checksum; rebuild it")
        indptr, indices = self._array(number, "indptr"), self._array(number, "indices")
        offsets, text = self._array(number, "text_offsets"), self._array(number, "text")
        if (indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0)
                or (indices.size and int(indices.max()) > self.max_mz) or offsets[0] != 0
                or offsets[-1] != text.size or np.any(np.diff(offsets) < 0)):
            raise self._error(f"damaged library index: {where} is inconsistent; rebuild it")
        self._verified.add(number)

    def verify(self) -> None:
        """Check every chunk (CRC-32 and structure); raises :class:`LibraryIndexError` naming the first bad one."""
        for number in range(self.n_chunks):
            self._verify_chunk(number)

    def _pieces(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """``(chunk, first row in chunk, last row + 1 in chunk)`` covering rows ``start..stop``."""
        number = int(np.searchsorted(self._starts, start, side="right")) - 1
        while start < stop:
            chunk_start, chunk_stop = self.chunk_rows(number)
            end = min(stop, chunk_stop)
            yield number, start - chunk_start, end - chunk_start
            start = end
            number += 1

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"{self.path}: rows {start}..{stop} outside 0..{len(self)}")

    def metadata(self, row: int) -> dict:
        """Name, inchikey, smiles and spectrum_id of spectrum ``row`` (as :class:`SpectralMatrix` rows have)."""
        self._check_range(row, row + 1)
        number = int(np.searchsorted(self._starts, row, side="right")) - 1
        self._verify_chunk(number)
        local = row - int(self._starts[number])
        offsets = self._array(number, "text_offsets")[4 * local:4 * local + 5]
        text_offset = self.info["chunks"][number]["arrays"]["text"][0]
        values = [self._mmap[text_offset + int(a):text_offset + int(b)].decode("utf-8", _TEXT_ERRORS)
                  for a, b in zip(offsets[:-1], offsets[1:])]
        return dict(zip(TEXT_FIELDS, values))

    def matrix(self, start: int = 0, stop: int | None = None, buffers: _BlockBuffers | None = None) -> SpectralMatrix:
        """Rows ``start..stop`` as a :class:`SpectralMatrix` (dense float32 vectors and peaks, lazy metadata).

        It takes ``5 * (stop - start) * (max_mz + 1)`` bytes; the index itself stays on disk. With ``buffers``
        the vectors and peaks are written into those (cleared first) instead of new arrays.
        """
        stop = len(self) if stop is None else stop
        self._check_range(start, stop)
        n, width = stop - start, self.max_mz + 1
        if buffers is None:
            vectors = np.zeros(n * width, dtype=np.float32)  # flat: one scatter of row * width + m/z
            peaks = np.zeros(n * width, dtype=bool)
        else:
            vectors, peaks = buffers.take(n * width)
        masses = np.empty(n, dtype=np.float64)
        above = np.empty(n, dtype=np.int32)
        low, high = width, 0
        row = 0
        for number, first, last in self._pieces(start, stop):
            self._verify_chunk(number)
            indptr = self._array(number, "indptr")[first:last + 1]
            begin, end = int(indptr[0]), int(indptr[-1])
            flat = np.repeat(np.arange(row * width, (row + last - first) * width, width, dtype=np.intp),
                             np.diff(indptr))
            columns = self._array(number, "indices")[begin:end]
            flat += columns
            values = self._array(number, "values")[begin:end]
            vectors[flat] = values
            peaks[flat] = True
            weighted = columns[values != 0]  # as SpectralMatrix.occupied_columns finds them: non-zero weights
            if weighted.size:
                low, high = min(low, int(weighted.min())), max(high, int(weighted.max()) + 1)
            masses[row:row + last - first] = self._array(number, "masses")[first:last]
            above[row:row + last - first] = self._array(number, "above_max_mz")[first:last]
            row += last - first
        max_mz, mz_power, intensity_power = self.settings
        return SpectralMatrix(vectors.reshape(n, width), peaks.reshape(n, width), IndexMetadata(self, start, stop),
                              max_mz, mz_power, intensity_power, masses, above,
                              occupied_columns=slice(low, high) if high > low else slice(0, 0))

    def gather(self, rows: np.ndarray | Sequence[int], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The dense vectors and peaks of arbitrary rows (e.g. the candidates of an approximate search).

        Parameters
        ----------
        rows
            Row numbers, in any order, repeats allowed.
        width
            Columns returned, m/z ``0..width - 1`` (default ``max_mz + 1``); stored bins at or above it are left out.

        Returns
        -------
        vectors, peaks
            ``(len(rows), width)`` float32 weighted unit vectors (as :meth:`matrix` gives them) and bool peaks.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        width = self.max_mz + 1 if width is None else int(width)
        vectors = np.zeros((rows.size, width), dtype=np.float32)
        peaks = np.zeros((rows.size, width), dtype=bool)
        for number, positions, local in self._rows_by_chunk(rows):
            indptr = self._array(number, "indptr")
            begins, lengths = indptr[local], indptr[local + 1] - indptr[local]
            # the stored bins of every asked row, one flat gather: begin of its row + position within it
            owners = np.repeat(np.arange(positions.size), lengths)
            starts = np.cumsum(lengths) - lengths
            stored = np.repeat(begins, lengths) + np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
            columns = self._array(number, "indices")[stored].astype(np.intp)
            keep = columns < width
            target_rows, columns = positions[owners[keep]], columns[keep]
            vectors[target_rows, columns] = self._array(number, "values")[stored[keep]]
            peaks[target_rows, columns] = True
        return vectors, peaks

    def row_masses(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Nominal molecular masses (float64, NaN where unknown) of arbitrary rows (their chunks verified)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        masses = np.full(rows.size, np.nan)
        for number, positions, local in self._rows_by_chunk(rows):
            masses[positions] = self._array(number, "masses")[local]
        return masses

    def _rows_by_chunk(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For arbitrary ``rows``: each chunk holding some of them (verified), as (chunk number, positions in
        ``rows``, row numbers within the chunk)."""
        if not rows.size:
            return
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"{self.path}: rows outside 0..{len(self) - 1}")
        chunks = np.searchsorted(self._starts, rows, side="right") - 1
        for number in np.unique(chunks).tolist():
            self._verify_chunk(number)
            positions = np.flatnonzero(chunks == number)
            yield number, positions, rows[positions] - self._starts[number]

    def _release(self, start: int, stop: int) -> None:
        """Tell the kernel that this process is done with the pages of rows ``start..stop`` (they stay in the
        page cache but leave this process's resident memory), so that the RSS of a search stays bounded."""
        if not hasattr(self._mmap, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        for number, _first, _last in self._pieces(start, stop):
            arrays = self.info["chunks"][number]["arrays"]
            low = min(offset for offset, _count, _crc in arrays.values())
            high = max(offset + count * self._dtypes[name].itemsize for name, (offset, count, _crc) in arrays.items())
            low += -low % mmap.PAGESIZE
            high -= high % mmap.PAGESIZE
            if high > low:
                with contextlib.suppress(OSError, ValueError):
                    self._mmap.madvise(mmap.MADV_DONTNEED, low, high - low)

    def check_settings(self, max_mz: int, mz_power: float, intensity_power: float) -> None:
        """Raise :class:`LibraryIndexError` unless the index was built with these search settings."""
        wanted = (int(max_mz), float(mz_power), float(intensity_power))
        if wanted != self.settings:
            built = dict(zip(("max_mz", "mz_power", "intensity_power"), self.settings))
            asked = dict(zip(("max_mz", "mz_power", "intensity_power"), wanted))
            raise self._error(
                f"the index was built with {built} but the search asks for {asked}; search with the index's "
                f"settings (the CLI takes them from the index when --max-mz/--mz-power/--intensity-power are not "
                f"given) or rebuild it: matchms-neims index {self.source.get('name', 'LIBRARY.msp')} "
                f"--max-mz {wanted[0]} --mz-power {wanted[1]:g} --intensity-power {wanted[2]:g}")

    def iter_blocks(self, block_entries: int, max_mz: int = SEARCH_MAX_MZ, mz_power: float = NEIMS_MZ_POWER,
                    intensity_power: float = NEIMS_INTENSITY_POWER, start: int = 0, stop: int | None = None,
                    reuse_buffers: bool = False) -> Iterator[SpectralMatrix]:
        """Rows ``start..stop`` as consecutive :class:`SpectralMatrix` blocks of at most ``block_entries`` spectra.

        The settings must be the index's (:meth:`check_settings`). The next block's pages are read ahead while a
        block is used, and a block's pages are released from this process's memory once the next block is asked
        for. With ``reuse_buffers`` every block's vectors and peaks live in the same two arrays, so a block is
        valid only until the next one is asked for (as :func:`~matchms_neims.search.search_library` uses them).
        An empty index gives one empty block. A row range (``start``, ``stop``; whole chunks:
        :meth:`chunk_rows`) is the unit a sharded search hands to each process.
        """
        self.check_settings(max_mz, mz_power, intensity_power)
        stop = len(self) if stop is None else stop
        self._check_range(start, stop)
        step = max(1, int(block_entries))
        if start == stop:
            yield self.matrix(start, stop)
            return
        buffers = _BlockBuffers(min(step, stop - start) * (self.max_mz + 1)) if reuse_buffers else None
        for first in range(start, stop, step):
            last = min(first + step, stop)
            self._prefetch(last, min(last + step, stop))  # read ahead while this block is scored
            yield self.matrix(first, last, buffers)
            self._release(first, last)

    def _prefetch(self, start: int, stop: int) -> None:
        """Ask the kernel to read the pages of rows ``start..stop`` in the background (MADV_WILLNEED)."""
        if start >= stop or not hasattr(self._mmap, "madvise") or not hasattr(mmap, "MADV_WILLNEED"):
            return
        for number, _first, _last in self._pieces(start, stop):
            arrays = self.info["chunks"][number]["arrays"]
            low = min(offset for offset, _count, _crc in arrays.values())
            low -= low % mmap.PAGESIZE
            high = max(offset + count * self._dtypes[name].itemsize for name, (offset, count, _crc) in arrays.items())
            with contextlib.suppress(OSError, ValueError):
                self._mmap.madvise(mmap.MADV_WILLNEED, low, high - low)


class _BlockBuffers:
    """The dense vectors and peaks of one block, reused from block to block, so that no new memory is faulted in per
    block (allocating and first touching 500 MB took longer than filling it on the 2-core test machine)."""

    def __init__(self, size: int) -> None:
        self.vectors = np.zeros(size, dtype=np.float32)
        self.peaks = np.zeros(size, dtype=bool)

    def take(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        vectors, peaks = self.vectors[:size], self.peaks[:size]
        vectors.fill(0.0)
        peaks.fill(False)
        return vectors, peaks


def iter_index_blocks(index: str | os.PathLike | LibraryIndex, block_entries: int, max_mz: int, mz_power: float,
                      intensity_power: float, reuse_buffers: bool = False, rows: tuple[int, int] | None = None
                      ) -> Iterator[SpectralMatrix]:
    """The blocks of an index file or open :class:`LibraryIndex` (see :meth:`LibraryIndex.iter_blocks`), of all its
    rows or of ``rows`` (``(start, stop)``)."""
    opened = index if isinstance(index, LibraryIndex) else LibraryIndex(index)
    start, stop = (0, None) if rows is None else (int(rows[0]), int(rows[1]))
    try:
        yield from opened.iter_blocks(block_entries, max_mz, mz_power, intensity_power, start, stop,
                                      reuse_buffers=reuse_buffers)
    finally:
        if opened is not index:
            opened.close()
