"""Approximate library search through FAISS: a vector-search index beside a library index, for 10 M entries and more.

``matchms-neims index LIBRARY.msp -o LIBRARY.nidx --faiss ivf-flat`` (or ``matchms-neims index LIBRARY.nidx --faiss
ivf-flat`` for an index already built) writes :func:`build_approximate_index`'s file beside the library index,
``LIBRARY.nidx.faiss``; ``matchms-neims search QUERIES.msp LIBRARY.nidx --approximate`` then searches through it
(:func:`search_approximate`). Exact search stays the default.

The vectors are the library index's own: binned, weighted (``mz**mz_power * intensity**intensity_power``) and
L2-normalised, so that FAISS's inner product is the cosine score of the exact search. Only the columns up to the
highest m/z stored in the library are kept (501 for a library predicted up to m/z 500), padded with zero columns
to a multiple of the PQ sub-quantizers; the query columns beyond them meet zeros in every library vector, so
nothing is lost.

FAISS only proposes candidates: each query's ``candidates`` best entries by FAISS's (approximate) scores are read
back from the library index (:meth:`~matchms_neims.library_index.LibraryIndex.gather`) and rescored exactly, in
float64 as the exact search rescores its candidates, with their matched peaks. So the reported scores and matched
peaks are the exact ones, hits are ordered as in the exact search (descending score, then ascending library
index), and only the candidate set is approximate: a hit of the exact top k that FAISS did not propose is missing,
and the entry after it moves up. docs/performance.md gives the recall of the exact top 10 measured on 228,700
entries.

Index kinds (``kind``; all inner product):

``ivf-pq``
    An inverted file of ``nlist`` lists, each vector stored as ``pq_m`` bytes (product quantisation of its
    residual); ``nprobe`` lists visited per query. 72 bytes per spectrum with ``pq_m`` 64 (19.1 MB for 228,700),
    so 10 M spectra take 0.7 GB of RAM, where the float32 vectors alone would take 20 GB. Its approximate scores
    are coarse, which the exact rescoring of a wider candidate list (10 x ``top_k``) is meant to make up for;
    on the 228,700-entry library it found 0.963 of the exact top 10 with nprobe 32 and 100 candidates.
``ivf-flat`` (default)
    The same inverted file with the float32 vectors (4 bytes per column and spectrum: 2 GB per million
    spectra at 501 columns); its scores are exact float32 inner products. Recall 0.997 on 228,700 entries
    (docs/performance.md); beyond a few million spectra its vectors no longer fit in RAM, and ``ivf-pq`` does.
``hnsw``
    A graph of the float32 vectors (``hnsw_m`` neighbours per node); ``ef_search`` nodes explored per query. No
    training, but the slowest to build and the largest (recall 0.906 at ef_search 128 on 228,700 entries).

The FAISS file (version 1, little-endian) is FAISS's own serialisation (``faiss.write_index``) followed by a JSON
footer (kind, parameters, dimensions, and the identity of the library index it was built from: its size, spectra,
bins, settings, dtype, creation time and source SHA-256; not its name, so that both files can be moved together)
and a 32-byte trailer (``"NFAIEND\\0"``, uint64 FAISS length, uint64 footer length, uint32 footer CRC-32, uint32
FAISS CRC-32). A truncated, damaged or stale file (one built from another library index) is refused with a
message naming it and the command that rebuilds it. It is
written under a temporary name beside the output and renamed when complete.

FAISS is an optional dependency (``pip install "matchms-neims[faiss]"``), imported only when an approximate index
is built or searched.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from matchms_neims.library_index import LibraryIndex, LibraryIndexError
from matchms_neims.search import (
    RESCORED_EXTRA,
    Hit,
    PeaksAboveMaxMz,
    SearchResult,
    _count_matches,
    _input_label,
    _log_above_max_mz,
    _rescored,
)
from matchms_neims.spectral_matrix import SpectraInput, as_spectral_matrix
from matchms_neims.utils import atomic_path

logger = logging.getLogger(__name__)

FAISS_SUFFIX = ".faiss"
FORMAT_NAME = "matchms-neims approximate index"
FORMAT_VERSION = 1
KINDS = ("ivf-pq", "ivf-flat", "hnsw")
DEFAULT_KIND = "ivf-flat"
DEFAULT_PQ_M = 64
DEFAULT_HNSW_M = 32
#: Lists visited per query (IVF kinds) when not given, and nodes explored (HNSW ``efSearch``).
DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128
#: Candidates per query rescored exactly, as a multiple of ``top_k`` (at least ``top_k + RESCORED_EXTRA``).
DEFAULT_CANDIDATE_FACTOR = {"ivf-pq": 10, "ivf-flat": 1, "hnsw": 1}
INSTALL_HINT = 'pip install "matchms-neims[faiss]"'

_TRAILER = struct.Struct("<8sQQII")
_TRAILER_MAGIC = b"NFAIEND\x00"
_CRC_BLOCK = 1 << 24


class ApproximateIndexError(LibraryIndexError):
    """An approximate (FAISS) index file cannot be used: missing, truncated, damaged, or of another library index."""


def import_faiss():
    """The ``faiss`` module, imported on first use; an :class:`ImportError` naming the extra to install otherwise."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(f"the approximate search needs FAISS, which is not installed: {INSTALL_HINT} "
                          f"(or pip install faiss-cpu)") from error
    return faiss


def default_approximate_path(index: str | os.PathLike) -> Path:
    """The FAISS file beside a library index: ``lib.nidx`` -> ``lib.nidx.faiss``."""
    path = Path(index)
    return path.with_name(path.name + FAISS_SUFFIX)


def _identity(index: LibraryIndex) -> dict:
    """What identifies the library index a FAISS file belongs to (checked when it is loaded)."""
    info = index.info
    return {"size": index.path.stat().st_size, "n_spectra": len(index), "nnz": index.nnz,
            "settings": info["settings"], "dtype": index.dtype, "created": info.get("created"),
            "source_sha256": index.source.get("sha256")}


def _columns(index: LibraryIndex) -> int:
    """Columns (m/z 0..columns - 1) that hold every stored bin of the library."""
    return max(1, int(index.info.get("max_column", index.max_mz)) + 1)


def default_nlist(n_spectra: int) -> int:
    """Inverted lists for ``n_spectra``: the power of two nearest ``2 * sqrt(n)``, with at least 39 training
    spectra per list (FAISS's minimum), e.g. 1,024 for 228,700 spectra (the setting measured) and 8,192 for 10 M."""
    if n_spectra < 39:
        return 1
    nlist = 2 ** int(round(np.log2(2 * np.sqrt(n_spectra))))
    return int(max(1, min(nlist, n_spectra // 39)))


@dataclass
class ApproximateSummary:
    """What :func:`build_approximate_index` did.

    Attributes
    ----------
    path, index
        The FAISS file written (or kept) and the library index it was built from.
    kind, factory
        The index kind and its FAISS factory string (e.g. ``"IVF2048,PQ64"``).
    n_spectra, dim
        Spectra added and vector dimensions (padded columns).
    train_spectra
        Spectra the quantisers were trained on (0 for ``hnsw``).
    file_size, seconds
        Bytes of the file and time taken.
    up_to_date
        True when a FAISS file of the same library index and parameters was already there and was kept.
    """

    path: Path
    index: Path
    kind: str
    factory: str
    n_spectra: int
    dim: int
    train_spectra: int
    file_size: int
    seconds: float
    up_to_date: bool = False

    def __str__(self) -> str:
        if self.up_to_date:
            return f"{self.path} is up to date with {self.index} ({self.factory}); kept"
        return (f"approximate index {self.factory} (inner product, {self.dim} dimensions) of {self.n_spectra:,} "
                f"spectra of {self.index} written to {self.path} ({self.file_size / 1e6:.1f} MB; trained on "
                f"{self.train_spectra:,} spectra) in {self.seconds:.1f} s")


def _factory(kind: str, nlist: int, pq_m: int, hnsw_m: int) -> str:
    if kind == "ivf-pq":
        return f"IVF{nlist},PQ{pq_m}"
    if kind == "ivf-flat":
        return f"IVF{nlist},Flat"
    if kind == "hnsw":
        return f"HNSW{hnsw_m},Flat"
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _padded(vectors: np.ndarray, columns: int, dim: int) -> np.ndarray:
    """The first ``columns`` columns of ``vectors`` as a C-contiguous float32 ``(n, dim)`` array (zero padded)."""
    out = np.zeros((len(vectors), dim), dtype=np.float32)
    used = min(columns, vectors.shape[1])
    out[:, :used] = vectors[:, :used]
    return out


def _open(index: str | os.PathLike | LibraryIndex) -> tuple[LibraryIndex, bool]:
    if isinstance(index, LibraryIndex):
        return index, False
    return LibraryIndex(index), True


def build_approximate_index(
    index: str | os.PathLike | LibraryIndex,
    output: str | os.PathLike | None = None,
    kind: str = DEFAULT_KIND,
    nlist: int | None = None,
    pq_m: int = DEFAULT_PQ_M,
    hnsw_m: int = DEFAULT_HNSW_M,
    train_size: int | None = None,
    block_entries: int = 20_000,
    seed: int = 0,
    threads: int | None = None,
    force: bool = False,
    kmeans_iterations: int | None = None,
) -> ApproximateSummary:
    """Write the FAISS inner-product index of a library index (streamed in blocks, atomic).

    Parameters
    ----------
    index
        The library index (``matchms-neims index``), a path or an open
        :class:`~matchms_neims.library_index.LibraryIndex`.
    output
        The FAISS file; by default beside the index (:func:`default_approximate_path`).
    kind
        ``"ivf-flat"`` (default), ``"ivf-pq"`` or ``"hnsw"`` (see the module docstring).
    nlist
        Inverted lists of the IVF kinds (default :func:`default_nlist`).
    pq_m
        Sub-quantizers (bytes per spectrum) of ``ivf-pq``; the dimensions are padded to a multiple of it.
    hnsw_m
        Neighbours per node of ``hnsw``.
    train_size
        Spectra the IVF kinds are trained on, drawn at random (``seed``) from the library: by default
        ``min(n, max(40 * nlist, 40,000))`` (FAISS asks for 39 per list), held densely at once: ``5 * dim`` bytes
        each, 1.7 GB for the 327,680 of 10 M spectra (8,192 lists).
    block_entries
        Spectra densified and added at a time (memory about ``9 * block_entries * (max_mz + 1)`` bytes).
    seed
        Seed of the training sample (and of FAISS's k-means), so that a rebuild gives the same file.
    threads
        FAISS (OpenMP) threads; default: FAISS's own choice (``OMP_NUM_THREADS``).
    force
        Rebuild even when ``output`` already belongs to this library index with these parameters.
    kmeans_iterations
        k-means iterations of the IVF and PQ training (default FAISS's: 10 for the lists, 25 for PQ); fewer trains
        faster, with somewhat coarser lists.

    Returns
    -------
    ApproximateSummary

    Raises
    ------
    ImportError
        When FAISS is not installed.
    ValueError
        On unknown parameters, or a library too small for the kind (``ivf-pq`` needs 256 spectra to train).
    """
    faiss = import_faiss()
    start_time = time.perf_counter()
    library, opened = _open(index)
    try:
        output = default_approximate_path(library.path) if output is None else Path(output)
        n = len(library)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if n == 0:
            raise ValueError(f"{library.path} holds no spectra; there is nothing to index approximately")
        if pq_m < 1 or hnsw_m < 2 or block_entries < 1:
            raise ValueError(f"pq_m, hnsw_m and block_entries must be positive, got {pq_m}, {hnsw_m}, {block_entries}")
        nlist = default_nlist(n) if nlist is None else int(nlist)
        if kind != "hnsw" and not 1 <= nlist <= n:
            raise ValueError(f"nlist must be between 1 and the {n} spectra, got {nlist}")
        if kind == "ivf-pq" and n < 256:
            raise ValueError(f"ivf-pq trains 256 centroids per sub-quantizer and needs at least 256 spectra; "
                             f"{library.path} has {n}: use --faiss ivf-flat, or the exact search")
        columns = _columns(library)
        dim = -(-columns // pq_m) * pq_m if kind == "ivf-pq" else columns
        factory = _factory(kind, nlist, pq_m, hnsw_m)
        parameters = {"kind": kind, "factory": factory, "nlist": nlist if kind != "hnsw" else None,
                      "pq_m": pq_m if kind == "ivf-pq" else None, "hnsw_m": hnsw_m if kind == "hnsw" else None,
                      "dim": dim, "columns": columns, "seed": seed}
        identity = _identity(library)
        if not force and output.exists():
            kept = _kept(output, identity, parameters)
            if kept is not None:
                return ApproximateSummary(output, library.path, kind, factory, n, dim, kept, output.stat().st_size,
                                          time.perf_counter() - start_time, up_to_date=True)
        if threads:
            faiss.omp_set_num_threads(int(threads))
        vector_index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        trained = 0
        if kind != "hnsw":
            trained = min(n, max(40 * nlist, 40_000)) if train_size is None else min(n, int(train_size))
            rows = np.sort(np.random.default_rng(seed).choice(n, size=trained, replace=False))
            sample = library.gather(rows, width=dim)[0]  # the columns from `columns` to `dim` stay zero: padding
            ivf = faiss.extract_index_ivf(vector_index)
            ivf.cp.seed = seed
            if kind == "ivf-pq":  # the factory turns on polysemous training (for Hamming filtering, unused): slow
                faiss.downcast_index(vector_index).do_polysemous_training = False
            if kmeans_iterations:
                ivf.cp.niter = int(kmeans_iterations)
                if kind == "ivf-pq":
                    faiss.downcast_index(vector_index).pq.cp.niter = int(kmeans_iterations)
            vector_index.train(sample)
            del sample
        settings = library.settings
        for block in library.iter_blocks(block_entries, *settings, reuse_buffers=True):
            if len(block):
                vector_index.add(_padded(block.vectors, columns, dim))
        footer = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "faiss_version": getattr(faiss, "__version__", "unknown"), "parameters": parameters,
                  "n_spectra": int(vector_index.ntotal), "train_spectra": trained, "library_index": identity}
        with atomic_path(output) as tmp:
            faiss.write_index(vector_index, str(tmp))
            _append_footer(tmp, footer)
        del vector_index
        return ApproximateSummary(output, library.path, kind, factory, n, dim, trained, output.stat().st_size,
                                  time.perf_counter() - start_time)
    finally:
        if opened:
            library.close()


def _file_crc(handle, length: int) -> int:
    crc = 0
    while length:
        data = handle.read(min(_CRC_BLOCK, length))
        if not data:
            break
        crc = zlib.crc32(data, crc)
        length -= len(data)
    return crc


def _append_footer(path: Path, footer: dict) -> None:
    """Append the JSON footer and the trailer to the FAISS serialisation at ``path`` (then fsync it)."""
    with open(path, "r+b") as handle:
        length = os.fstat(handle.fileno()).st_size
        crc = _file_crc(handle, length)
        data = json.dumps(footer, separators=(",", ":")).encode("utf-8")
        handle.seek(length)
        handle.write(data)
        handle.write(_TRAILER.pack(_TRAILER_MAGIC, length, len(data), zlib.crc32(data), crc))
        handle.flush()
        os.fsync(handle.fileno())


def _read_footer(path: Path) -> tuple[dict, int, int]:
    """The footer of a FAISS file, its FAISS length and CRC-32 (the payload itself is not read)."""
    rebuild = "rebuild it: matchms-neims index LIBRARY.nidx --faiss KIND"
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise ApproximateIndexError(f"{path}: no approximate index there; build it with `matchms-neims index "
                                    f"LIBRARY.nidx --faiss {DEFAULT_KIND}` (or pass its path)") from None
    except IsADirectoryError:
        raise ApproximateIndexError(f"{path}: is a directory, not an approximate index") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size < _TRAILER.size:
            raise ApproximateIndexError(f"{path}: truncated or empty ({size} bytes), not an approximate index; "
                                        f"{rebuild}")
        handle.seek(size - _TRAILER.size)
        magic, length, footer_length, footer_crc, crc = _TRAILER.unpack(handle.read(_TRAILER.size))
        if magic != _TRAILER_MAGIC or length + footer_length + _TRAILER.size != size:
            raise ApproximateIndexError(f"{path}: not a complete matchms-neims approximate index (its end marker "
                                        f"is missing: truncated, interrupted or another file); {rebuild}")
        handle.seek(length)
        data = handle.read(footer_length)
    if zlib.crc32(data) != footer_crc:
        raise ApproximateIndexError(f"{path}: damaged approximate index (its footer fails its checksum); {rebuild}")
    try:
        footer = json.loads(data.decode("utf-8"))
        if footer.get("format") != FORMAT_NAME or footer.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {footer.get('format')!r} version {footer.get('version')!r}")
        if footer["parameters"]["kind"] not in KINDS or not isinstance(footer["library_index"], dict):
            raise ValueError(f"unknown kind {footer['parameters']['kind']!r}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ApproximateIndexError(f"{path}: unreadable approximate index footer ({error}); {rebuild}") from None
    return footer, length, crc


def _kept(path: Path, identity: dict, parameters: dict) -> int | None:
    """The training size of the FAISS file at ``path`` if it is intact and matches, else None."""
    try:
        footer, _length, _crc = _read_footer(path)
    except ApproximateIndexError:
        return None
    if footer["library_index"] == identity and footer["parameters"] == parameters:
        return int(footer.get("train_spectra", 0))
    return None


class ApproximateIndex:
    """A FAISS file opened for search (its vectors are read into memory; the library index stays memory-mapped).

    Parameters
    ----------
    path
        The FAISS file (:func:`build_approximate_index`).
    library
        The library index it must belong to; checked when given (:meth:`check_library`).

    Attributes
    ----------
    path, info
        The file and its footer (kind, parameters, library index identity).
    faiss_index
        The loaded ``faiss.Index``.
    """

    def __init__(self, path: str | os.PathLike, library: LibraryIndex | None = None) -> None:
        self.path = Path(path)
        self.info, length, crc = _read_footer(self.path)
        if library is not None:
            self.check_library(library)
        faiss = import_faiss()
        payload = np.fromfile(self.path, dtype=np.uint8, count=length)
        if zlib.crc32(payload) != crc:
            raise ApproximateIndexError(f"{self.path}: damaged approximate index (its FAISS data fails its "
                                        f"checksum); rebuild it: matchms-neims index LIBRARY.nidx --faiss {self.kind}")
        try:
            self.faiss_index = faiss.deserialize_index(payload)
        except RuntimeError as error:
            raise ApproximateIndexError(f"{self.path}: FAISS cannot read it ({str(error).splitlines()[0]}); "
                                        f"rebuild it") from None
        del payload
        if self.faiss_index.ntotal != self.info["n_spectra"] or self.faiss_index.d != self.dim:
            raise ApproximateIndexError(f"{self.path}: damaged approximate index (FAISS holds "
                                        f"{self.faiss_index.ntotal} vectors of {self.faiss_index.d} dimensions, "
                                        f"the footer says {self.info['n_spectra']} of {self.dim}); rebuild it")

    def __repr__(self) -> str:
        return f"ApproximateIndex({str(self.path)!r}, {self.factory}, n={self.info['n_spectra']})"

    @property
    def kind(self) -> str:
        return self.info["parameters"]["kind"]

    @property
    def factory(self) -> str:
        return self.info["parameters"]["factory"]

    @property
    def dim(self) -> int:
        return int(self.info["parameters"]["dim"])

    @property
    def columns(self) -> int:
        """m/z columns ``0..columns - 1`` the vectors hold (the others are zero in every library spectrum)."""
        return int(self.info["parameters"]["columns"])

    def check_library(self, library: LibraryIndex) -> None:
        """Raise :class:`ApproximateIndexError` unless this file was built from ``library`` as it is now."""
        built, now = self.info["library_index"], _identity(library)
        if built != now:
            changed = ", ".join(key for key in now if built.get(key) != now[key])
            raise ApproximateIndexError(
                f"{self.path} was built from another library index than {library.path} (differs in: {changed}); "
                f"rebuild it: matchms-neims index {library.path} --faiss {self.kind}")

    def candidates(self, vectors: np.ndarray, count: int, nprobe: int | None = None,
                   ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's ``count`` best library rows of each query vector (``-1`` where it found fewer), and their
        approximate scores.

        ``vectors`` are weighted unit query vectors of the library's settings (``(n, >= columns)``); ``nprobe``
        (IVF kinds) and ``ef_search`` (HNSW) default to :data:`DEFAULT_NPROBE` and :data:`DEFAULT_EF_SEARCH`.
        """
        faiss = import_faiss()
        queries = _padded(vectors, self.columns, self.dim)
        count = max(1, min(int(count), self.info["n_spectra"]))
        if self.kind == "hnsw":
            parameters = faiss.SearchParametersHNSW(efSearch=max(int(ef_search or DEFAULT_EF_SEARCH), count))
        else:
            nlist = faiss.extract_index_ivf(self.faiss_index).nlist
            parameters = faiss.SearchParametersIVF(nprobe=max(1, min(int(nprobe or DEFAULT_NPROBE), nlist)))
        scores, rows = self.faiss_index.search(queries, count, params=parameters)
        return rows, scores


def _exact_top(query_vectors: np.ndarray, query_peaks: np.ndarray, query_masses: np.ndarray, rows: np.ndarray,
               library: LibraryIndex, columns: int, top_k: int, mass_window: float | None
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per query: its candidates rescored exactly (search's float64 rescoring and matched-peak count), the
    ``top_k`` best as (rows, scores, matched peaks); candidates outside the mass window are dropped."""
    unique, inverse = np.unique(rows[rows >= 0], return_inverse=True)
    if not unique.size:  # FAISS proposed nothing
        for _ in range(len(rows)):
            yield unique, np.zeros(0), np.zeros(0, dtype=np.int64)
        return
    vectors, peaks = library.gather(unique, width=columns)
    valid = rows >= 0
    position = np.zeros(rows.shape, dtype=np.int64)  # candidates as rows of the gathered block, sorted as the library
    position[valid] = inverse
    # FAISS may propose a row twice: keep its first proposal only
    order = np.argsort(np.where(valid, position, -1), axis=1, kind="stable")
    ordered = np.take_along_axis(np.where(valid, position, -1), order, axis=1)
    repeated = np.zeros(rows.shape, dtype=bool)
    repeated[:, 1:] = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    np.put_along_axis(valid, order, np.take_along_axis(valid, order, axis=1) & ~repeated, axis=1)
    if mass_window is not None:
        with np.errstate(invalid="ignore"):
            valid &= ~(np.abs(library.row_masses(unique)[position] - query_masses[:, None]) > mass_window)
    top, scores = _rescored(query_vectors[:, :columns], vectors, position, valid, min(top_k, rows.shape[1]))
    matched = _count_matches(query_peaks[:, :columns], peaks, top)
    for found, found_scores, found_matched in zip(top, scores, matched):
        keep = found_scores >= 0
        yield unique[found[keep]], found_scores[keep], found_matched[keep]


def search_approximate(
    queries: SpectraInput,
    library: str | os.PathLike | LibraryIndex,
    top_k: int = 10,
    approximate: str | os.PathLike | ApproximateIndex | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    candidates: int | None = None,
    mz_power: float | None = None,
    intensity_power: float | None = None,
    max_mz: int | None = None,
    block_size: int = 1024,
    mass_window: float | None = None,
    query_label: str | None = None,
    library_label: str | None = None,
    threads: int | None = None,
) -> SearchResult:
    """The ``top_k`` hits of every query among the candidates an approximate (FAISS) index proposes.

    Scores and matched peaks are exact (the candidates are rescored from the library index), hits are ordered
    by descending score then ascending library index, as in :func:`~matchms_neims.search.search_library`; the
    candidate set is approximate, so an exact hit can be missing (see the module docstring).

    Parameters
    ----------
    queries
        As for :func:`~matchms_neims.search.search_library`: a file, spectra, records or a
        :class:`~matchms_neims.search.SpectralMatrix` of the library index's settings.
    library
        The library index (path or open :class:`~matchms_neims.library_index.LibraryIndex`).
    top_k
        Hits per query (fewer when FAISS proposes fewer, or the mass window leaves fewer).
    approximate
        The FAISS file or an open :class:`ApproximateIndex`; default beside the index
        (:func:`default_approximate_path`).
    nprobe, ef_search
        Inverted lists visited per query (IVF kinds; default :data:`DEFAULT_NPROBE`) or HNSW nodes explored
        (default :data:`DEFAULT_EF_SEARCH`): more is slower and finds more of the exact hits.
    candidates
        Entries per query taken from FAISS and rescored exactly; default ``top_k`` times
        :data:`DEFAULT_CANDIDATE_FACTOR` of the kind (10 for ``ivf-pq``, whose scores are coarse), at least
        ``top_k + RESCORED_EXTRA``.
    mz_power, intensity_power, max_mz
        The search settings; default (``None``) the index's. Others are refused, as the exact search does.
    block_size
        Queries passed to FAISS at a time.
    mass_window
        As in the exact search, applied to the candidates: entries outside it are dropped (so fewer than
        ``top_k`` hits may remain when FAISS's candidates lie mostly outside the window).
    query_label, library_label
        Names of the inputs in the warning about peaks above ``max_mz``.
    threads
        FAISS (OpenMP) threads; default FAISS's choice.

    Returns
    -------
    SearchResult
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if mass_window is not None and mass_window < 0:
        raise ValueError(f"mass_window must be >= 0, got {mass_window}")
    index, opened = _open(library)
    try:
        built = index.settings
        settings = (built[0] if max_mz is None else int(max_mz), built[1] if mz_power is None else float(mz_power),
                    built[2] if intensity_power is None else float(intensity_power))
        index.check_settings(*settings)
        vector_index = approximate if isinstance(approximate, ApproximateIndex) else ApproximateIndex(
            default_approximate_path(index.path) if approximate is None else approximate, index)
        vector_index.check_library(index)
        if threads:
            import_faiss().omp_set_num_threads(int(threads))
        query_matrix = as_spectral_matrix(queries, *settings, "query")
        query_above = PeaksAboveMaxMz.of(query_matrix)
        _log_above_max_mz(query_above, _input_label(queries, query_label, "queries"), settings[0])
        n_library = len(index)
        k = min(int(top_k), n_library)
        factor = DEFAULT_CANDIDATE_FACTOR[vector_index.kind]
        count = max(k + RESCORED_EXTRA, factor * k) if candidates is None else max(k, int(candidates))
        columns = vector_index.columns
        hits: list[list[Hit]] = []
        for start in range(0, len(query_matrix), block_size):
            stop = min(start + block_size, len(query_matrix))
            if k == 0:
                hits.extend([] for _ in range(start, stop))
                continue
            rows, _scores = vector_index.candidates(query_matrix.vectors[start:stop], count, nprobe, ef_search)
            for found, scores, matched in _exact_top(query_matrix.vectors[start:stop], query_matrix.peaks[start:stop],
                                                     query_matrix.masses[start:stop], rows, index, columns, k,
                                                     mass_window):
                row = []
                for library_row, score, count_matched in zip(found.tolist(), scores.tolist(), matched.tolist()):
                    meta = index.metadata(library_row)
                    row.append(Hit(rank=len(row) + 1, library_index=library_row, score=score,
                                   matched_peaks=count_matched, name=meta["name"], inchikey=meta["inchikey"],
                                   smiles=meta["smiles"], spectrum_id=meta["spectrum_id"]))
                hits.append(row)
        above = index.info.get("above_max_mz", {})
        library_above = PeaksAboveMaxMz(int(above.get("peaks", 0)), int(above.get("records", 0)))
        _log_above_max_mz(library_above, _input_label(library, library_label, "library"), settings[0])
        return SearchResult(hits=hits, queries=list(query_matrix.metadata), n_queries=len(query_matrix),
                            n_library=n_library, max_mz=settings[0], query_above_max_mz=query_above,
                            library_above_max_mz=library_above)
    finally:
        if opened:
            index.close()
