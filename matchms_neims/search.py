"""Fast unit-resolution library search: cosine scores of many query spectra against a spectral library.

The search works on nominal-mass (unit-resolution) spectra, as EI libraries do. Queries and library are binned,
weighted and L2-normalised as :class:`~matchms_neims.spectral_matrix.SpectralMatrix` rows (peaks above ``max_mz``
are counted in :class:`SearchResult` and logged per file). A whole block of queries is then scored against the
whole library with a single dense matrix product, so there is no Python loop over library entries.

On spectra with integer m/z values the scores equal
``matchms.similarity.CosineGreedy(tolerance=0.5, mz_power=mz_power, intensity_power=intensity_power)``
computed on the same (binned) spectra, and the matched-peak counts equal CosineGreedy's ``matches``: with
integer m/z and a tolerance of 0.5 only peaks at the same nominal m/z can pair, so the greedy assignment is
the identity on shared bins. Spectra with non-integer m/z are binned first; the result then equals
CosineGreedy on the binned spectra, not on the original high-resolution ones.

The default weighting ``mz_power=1.0, intensity_power=0.5`` is the one NEIMS (Wei et al. 2019) used for
library matching.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from matchms_neims.library_index import LibraryIndex, LibraryIndexError, is_library_index, iter_index_blocks
from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER
from matchms_neims.spectral_matrix import (
    SEARCH_MAX_MZ,
    SpectraInput,
    SpectralMatrix,
    as_spectral_matrix,
    iter_spectra_blocks,
    spectra_file_size,
    tsv_text,
)
from matchms_neims.utils import atomic_output

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.5
"""CosineGreedy tolerance the unit-resolution search is equivalent to (documentation only)."""

#: Candidates per query taken from the matrix product beyond ``top_k`` and rescored exactly (:func:`_rescored`).
RESCORED_EXTRA = 8
_GATHER_ELEMENTS = 1 << 22  # bound on the temporary arrays of the top-k selection and of the matched-peak count

TSV_COLUMNS = (
    "query_index",
    "query_name",
    "query_inchikey",
    "rank",
    "score",
    "matched_peaks",
    "library_index",
    "library_name",
    "library_inchikey",
    "library_smiles",
    "library_id",
)


# --------------------------------------------------------------------------------------------- results


@dataclass
class Hit:
    """One library match of a query.

    Attributes
    ----------
    rank
        1 for the best hit.
    library_index
        Row of the library spectrum (its position in the library file or list).
    score
        Cosine score in ``[0, 1]``.
    matched_peaks
        Number of nominal m/z values present in both spectra (CosineGreedy's ``matches``).
    name, inchikey, smiles, spectrum_id
        Metadata of the library spectrum (``""`` where missing).
    """

    rank: int
    library_index: int
    score: float
    matched_peaks: int
    name: str = ""
    inchikey: str = ""
    smiles: str = ""
    spectrum_id: str = ""


@dataclass(frozen=True)
class PeaksAboveMaxMz:
    """Peaks a search did not compare because their nominal m/z is above ``max_mz``.

    Attributes
    ----------
    peaks
        Number of such peaks (with a positive intensity).
    records
        Number of spectra holding at least one of them.
    """

    peaks: int = 0
    records: int = 0

    @classmethod
    def of(cls, matrix: SpectralMatrix) -> PeaksAboveMaxMz:
        """The counts of a :class:`SpectralMatrix` (from its :attr:`SpectralMatrix.above_max_mz`)."""
        return cls(int(matrix.above_max_mz.sum()), int(np.count_nonzero(matrix.above_max_mz)))

    def __add__(self, other: PeaksAboveMaxMz) -> PeaksAboveMaxMz:
        return PeaksAboveMaxMz(self.peaks + other.peaks, self.records + other.records)

    def message(self, label: str, max_mz: int) -> str:
        """E.g. ``"queries.msp: 12 peaks above m/z 1000 (--max-mz) in 3 records were not compared"``."""
        peaks = "1 peak" if self.peaks == 1 else f"{self.peaks} peaks"
        records = "1 record" if self.records == 1 else f"{self.records} records"
        verb = "was" if self.peaks == 1 else "were"
        return f"{label}: {peaks} above m/z {max_mz} (--max-mz) in {records} {verb} not compared"


@dataclass
class SearchResult:
    """Hits of every query, best first.

    Attributes
    ----------
    hits
        ``hits[i]`` lists the ``min(top_k, n_library)`` best hits of query ``i``.
    queries
        Metadata of each query (keys ``name``, ``inchikey``, ``smiles``, ``spectrum_id``).
    n_queries, n_library
        Number of query and library spectra.
    max_mz
        Highest nominal m/z compared.
    query_above_max_mz, library_above_max_mz
        Peaks of the queries and of the library above ``max_mz``, which were not compared (also logged).
    """

    hits: list[list[Hit]]
    queries: list[dict] = field(default_factory=list)
    n_queries: int = 0
    n_library: int = 0
    max_mz: int = SEARCH_MAX_MZ
    query_above_max_mz: PeaksAboveMaxMz = field(default_factory=PeaksAboveMaxMz)
    library_above_max_mz: PeaksAboveMaxMz = field(default_factory=PeaksAboveMaxMz)

    def to_rows(self) -> list[dict]:
        """One dict per (query, hit) with the columns of :data:`TSV_COLUMNS`, in query then rank order."""
        rows = []
        for query_index, hits in enumerate(self.hits):
            query = self.queries[query_index] if query_index < len(self.queries) else {}
            for hit in hits:
                rows.append(
                    {
                        "query_index": query_index,
                        "query_name": query.get("name", ""),
                        "query_inchikey": query.get("inchikey", ""),
                        "rank": hit.rank,
                        "score": hit.score,
                        "matched_peaks": hit.matched_peaks,
                        "library_index": hit.library_index,
                        "library_name": hit.name,
                        "library_inchikey": hit.inchikey,
                        "library_smiles": hit.smiles,
                        "library_id": hit.spectrum_id,
                    }
                )
        return rows

    def to_tsv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_rows` as a tab-separated file with a header line, atomically.

        Scores are written with 6 decimals. Returns the path written.
        """
        path = Path(path)
        with atomic_output(path) as handle:
            handle.write("\t".join(TSV_COLUMNS) + "\n")
            for row in self.to_rows():
                values = [f"{row['score']:.6f}" if key == "score" else tsv_text(row[key]) for key in TSV_COLUMNS]
                handle.write("\t".join(values) + "\n")
        return path


# --------------------------------------------------------------------------------------------- search

def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores per row, sorted by descending score then ascending index."""
    n_rows, n_cols = scores.shape
    if k >= n_cols:
        candidates = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    else:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -candidate_scores), axis=1)
    top = np.take_along_axis(candidates, order, axis=1)
    if k < n_cols:
        # argpartition breaks ties at the k-th score arbitrarily; redo rows where the tie crosses the cut.
        threshold = np.take_along_axis(scores, top[:, -1:], axis=1)
        crowded = np.flatnonzero(np.count_nonzero(scores >= threshold, axis=1) > k)
        for row in crowded:
            tied = np.flatnonzero(scores[row] >= threshold[row, 0])
            top[row] = tied[np.lexsort((tied, -scores[row, tied]))][:k]
    return top


def _top_k_above(scores: np.ndarray, k: int, floor: np.ndarray) -> np.ndarray:
    """:func:`_top_k` for a search that already holds ``top_k`` hits per query: only entries scoring at least
    ``floor`` (per row) can still be hits, and those are few, so they are found with one comparison pass instead
    of a selection over the whole row. A row with fewer than ``k`` such entries is filled with other entries
    (scoring below ``floor``, never hits); a row with many uses :func:`_top_k`."""
    n_rows, n_cols = scores.shape
    cap = 4 * k + 64
    if k >= n_cols or n_cols < 2 * cap:
        return _top_k(scores, k)
    rows, cols = np.divmod(np.flatnonzero(scores >= floor[:, None]), n_cols)
    counts = np.bincount(rows, minlength=n_rows)
    top = np.empty((n_rows, k), dtype=np.int64)
    crowded = counts > cap
    if crowded.any():
        top[crowded] = _top_k(scores[crowded], k)
        keep = ~crowded[rows]
        rows, cols = rows[keep], cols[keep]
    few = np.flatnonzero(~crowded)
    if not few.size:
        return top
    # candidates of each row in positions 0..count-1, then fillers: the first entries below the floor
    local = np.cumsum(~crowded) - 1  # row -> its position among the rows that are not crowded
    rows = local[rows]
    counts = counts[few]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    positions = np.arange(rows.size) - starts[rows]
    indices = np.empty((few.size, cap), dtype=np.int64)
    values = np.full((few.size, cap), -np.inf, dtype=np.float32)
    indices[rows, positions] = cols
    values[rows, positions] = scores[few[rows], cols]
    fill_rows, fill_cols = np.nonzero(scores[few, : 2 * cap] < floor[few, None])
    fill_starts = np.concatenate([[0], np.cumsum(np.bincount(fill_rows, minlength=few.size))[:-1]])
    fill_positions = np.arange(fill_rows.size) - fill_starts[fill_rows] + counts[fill_rows]
    keep = fill_positions < cap
    indices[fill_rows[keep], fill_positions[keep]] = fill_cols[keep]
    order = np.lexsort((indices, -values), axis=1)[:, :k]
    top[few] = np.take_along_axis(indices, order, axis=1)
    return top


#: How far below a query's current ``top_k``-th score (float64) a matrix-product score (float32) may lie and the
#: entry still be taken as a candidate: the float32 product of two unit vectors of 1,001 terms is within ~6e-5.
_FLOOR_MARGIN = 2e-4


def _rescored(query_vectors: np.ndarray, library_vectors: np.ndarray, candidates: np.ndarray, valid: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each row's candidates, rescored pair by pair in float64.

    The matrix product's last bits depend on the shapes BLAS is given (the library block size), so identical
    library spectra (stereoisomers) could score apart and swap ranks between runs. Each candidate's score is
    therefore recomputed on its own, the same way whatever the blocks, and ties are broken by library order
    (candidates are row numbers of ``library_vectors``). Candidates where ``valid`` (same shape) is false, such
    as entries outside the mass window, score -1. The approximate search rescores FAISS's candidates here too.
    """
    exact = np.empty(candidates.shape, dtype=np.float64)
    step = max(1, _GATHER_ELEMENTS // max(1, candidates.shape[1] * library_vectors.shape[1]))
    for start in range(0, len(candidates), step):
        stop = min(start + step, len(candidates))
        rows = library_vectors[candidates[start:stop]]  # cast to float64 by einsum in its buffers, not copied
        exact[start:stop] = np.einsum("ikj,ij->ik", rows, query_vectors[start:stop], dtype=np.float64)
    np.clip(exact, 0.0, 1.0, out=exact)
    exact[~valid] = -1.0
    order = np.lexsort((candidates, -exact), axis=1)[:, :k]
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(exact, order, axis=1)


def _count_matches(query_peaks: np.ndarray, library_peaks: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Number of shared peaks between each query row and its selected library rows."""
    n_rows, k = top.shape
    counts = np.zeros((n_rows, k), dtype=np.int64)
    width = query_peaks.shape[1]
    step = max(1, _GATHER_ELEMENTS // max(1, k * width))
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        shared = library_peaks[top[start:stop]] & query_peaks[start:stop, None, :]
        counts[start:stop] = np.count_nonzero(shared, axis=2)
    return counts


def _outside_mass_window(query_masses: np.ndarray, library_masses: np.ndarray, window: float) -> np.ndarray:
    """``(n_queries, n_library)`` True where both masses are known and differ by more than ``window``."""
    with np.errstate(invalid="ignore"):
        return np.abs(query_masses[:, None] - library_masses[None, :]) > window


def iter_search_blocks(
    queries: SpectralMatrix, library: SpectralMatrix, top_k: int, block_size: int = 1024,
    mass_window: float | None = None, floor: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Score query blocks against the library.

    Yields ``(start, indices, scores, matched_peaks)`` per block of at most ``block_size`` queries, each
    array of shape ``(block, min(top_k, n_library))``. Memory is bounded by ``block_size * n_library``
    float32 scores. With ``mass_window``, library entries whose nominal mass differs from the query's by
    more than the window score -1 (both masses must be known; see :attr:`SpectralMatrix.masses`).
    ``floor`` (float32, one per query), when the caller already holds ``top_k`` hits scoring at least
    ``floor + _FLOOR_MARGIN``: the entries scoring below it are not hits, and a row's indices are then exact only
    for the entries at or above it (the others are fillers, which the caller's merge drops).
    """
    if queries.settings != library.settings:
        raise ValueError(f"query settings {queries.settings} differ from library settings {library.settings}")
    k = min(int(top_k), len(library))
    columns = library.occupied_columns()  # the other columns of the library are zero: skipped in the product
    library_t = library.vectors[:, columns].T
    for start in range(0, len(queries), max(1, int(block_size))):
        stop = min(start + max(1, int(block_size)), len(queries))
        if k == 0:
            empty = np.zeros((stop - start, 0))
            yield start, empty.astype(np.int64), empty, empty.astype(np.int64)
            continue
        scores = queries.vectors[start:stop, columns] @ library_t
        np.clip(scores, 0.0, 1.0, out=scores)
        if mass_window is not None:
            scores[_outside_mass_window(queries.masses[start:stop], library.masses, mass_window)] = -1.0
        # argpartition needs an int64 index array as large as its input: select in row chunks to bound memory.
        rows_per_chunk = max(1, _GATHER_ELEMENTS // max(1, scores.shape[1]))
        wide = min(k + RESCORED_EXTRA, scores.shape[1])
        top = np.concatenate(
            [_top_k(scores[i : i + rows_per_chunk], wide) if floor is None
             else _top_k_above(scores[i : i + rows_per_chunk], wide, floor[start:stop][i : i + rows_per_chunk])
             for i in range(0, scores.shape[0], rows_per_chunk)]
        )
        top, top_scores = _rescored(queries.vectors[start:stop, columns], library.vectors[:, columns], top,
                                    np.take_along_axis(scores, top, axis=1) >= 0, k)
        matches = _count_matches(queries.peaks[start:stop], library.peaks, top)
        yield start, top, top_scores, matches


def iter_library_blocks(
    library: SpectraInput, block_entries: int, max_mz: int, mz_power: float, intensity_power: float,
    reuse_buffers: bool = False, rows: tuple[int, int] | None = None,
) -> Iterator[SpectralMatrix]:
    """The library as consecutive :class:`SpectralMatrix` blocks of at most ``block_entries`` spectra.

    A file or an iterable is read once, block by block (:func:`~matchms_neims.spectral_matrix.iter_spectra_blocks`),
    so only one block is in memory at a time; a :class:`SpectralMatrix` is yielded whole. A library index
    (:mod:`matchms_neims.library_index`: a path or an open :class:`~matchms_neims.library_index.LibraryIndex`) is
    read through its memory map, block by block; its settings must be these; with ``reuse_buffers`` its blocks
    share their arrays, each valid until the next is asked for; ``rows`` (``(start, stop)``, an index only) reads
    those rows alone. An empty library gives one empty block.
    """
    is_index = isinstance(library, LibraryIndex) or isinstance(library, str | os.PathLike) and is_library_index(library)
    if rows is not None and not is_index:
        raise ValueError("a row range of the library (library_rows) needs a library index (matchms-neims index)")
    if is_index:
        yield from iter_index_blocks(library, block_entries, max_mz, mz_power, intensity_power, reuse_buffers, rows)
    else:
        yield from iter_spectra_blocks(library, block_entries, max_mz, mz_power, intensity_power)


def _merge_top_k(best: tuple[np.ndarray, ...], candidates: tuple[np.ndarray, ...], k: int) -> tuple[np.ndarray, ...]:
    """Keep the ``k`` best of the running and the new hits per row (descending score, then ascending index)."""
    indices, scores, matches = (np.concatenate([old, new], axis=1) for old, new in zip(best, candidates))
    order = np.lexsort((indices, -scores), axis=1)[:, :k]
    return tuple(np.take_along_axis(values, order, axis=1) for values in (indices, scores, matches))


def search_library(
    queries: SpectraInput,
    library: SpectraInput,
    top_k: int = 10,
    mz_power: float = NEIMS_MZ_POWER,
    intensity_power: float = NEIMS_INTENSITY_POWER,
    max_mz: int = SEARCH_MAX_MZ,
    block_size: int = 1024,
    library_block_size: int = 100_000,
    mass_window: float | None = None,
    query_label: str | None = None,
    library_label: str | None = None,
    progress: bool = False,
    expected_library_size: int | None = None,
    library_rows: tuple[int, int] | None = None,
) -> SearchResult:
    """Find the ``top_k`` most similar library spectra of every query (unit-resolution cosine).

    Scores equal ``CosineGreedy(tolerance=0.5, mz_power=mz_power, intensity_power=intensity_power)`` on the
    binned spectra, and matched peaks equal its ``matches`` (see the module docstring). Spectra are binned
    to nominal m/z first; peaks above ``max_mz`` are not compared: they are counted in the result
    (:attr:`SearchResult.query_above_max_mz`, :attr:`SearchResult.library_above_max_mz`) and a warning per
    file gives their number. Queries or library spectra without peaks score 0 against everything.

    A library file or list is streamed in blocks of ``library_block_size`` spectra, keeping only the
    running top ``k`` of every query and the metadata of those hits, so libraries far larger than memory
    can be searched; the hits are the same as with the whole library in one block.

    Parameters
    ----------
    queries, library
        An MSP/MGF file path, a list of :class:`matchms.Spectrum`, a list of
        :class:`~matchms_neims.io.SpectrumRecord`, or a :class:`SpectralMatrix` (which must have been built
        with the same ``max_mz``, ``mz_power`` and ``intensity_power``). The library may also be a library
        index (``matchms-neims index``; a path or a :class:`~matchms_neims.library_index.LibraryIndex`), read
        through a memory map block by block, with the same hits as its MSP/MGF file; it must have been built with
        these settings (:class:`~matchms_neims.library_index.LibraryIndexError` otherwise).
    top_k
        Number of hits per query; fewer when the library is smaller (or the mass window leaves fewer).
    mz_power, intensity_power
        Peak weighting ``mz**mz_power * intensity**intensity_power``. The defaults (1, 0.5) are the NEIMS
        library-matching weights; (0, 1) is the plain cosine.
    max_mz
        Highest nominal m/z considered.
    block_size
        Queries scored per matrix product.
    library_block_size
        Library spectra binned and scored at a time. Memory is about ``5 * library_block_size * (max_mz + 1)``
        bytes for the block plus ``4 * block_size * library_block_size`` for the scores.
    mass_window
        Prefilter: only library entries whose nominal molecular mass is within this many Da of the query's
        can be hits. Applies where both masses are known (``nominal_mass``/MSP ``MW``, ``exact_mass`` or
        ``parent_mass`` metadata, :attr:`SpectralMatrix.masses`); a query without a mass is compared with every entry.
        ``None`` (default): no prefilter.
    query_label, library_label
        Names of the query and library inputs in the warning about peaks above ``max_mz`` (default: the file
        name of a path, else ``"queries"`` and ``"library"``).
    progress
        Show a tqdm bar of the library spectra scored.
    expected_library_size
        The bar's total; by default a library file's records are counted (:func:`~matchms_neims.io.count_records`)
        and a list's length is taken (a stream of records has no total).
    library_rows
        ``(start, stop)``: search only these rows of a library index (a shard, :mod:`matchms_neims.sharded_search`).
        Hits keep their row in the whole index as ``library_index``, ``n_library`` counts the rows searched, and
        :func:`merge_search_results` of the shards gives the hits of the whole index when each shard starts on a
        multiple of ``library_block_size`` (the blocks, and so every score, are then those of one search).

    Returns
    -------
    SearchResult
        Hits per query ordered by descending score, ties broken by ascending library index.
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if block_size < 1 or library_block_size < 1:
        raise ValueError(f"block sizes must be >= 1, got {block_size} and {library_block_size}")
    if mass_window is not None and mass_window < 0:
        raise ValueError(f"mass_window must be >= 0, got {mass_window}")
    query_matrix = as_spectral_matrix(queries, max_mz, mz_power, intensity_power, "query")
    query_above = PeaksAboveMaxMz.of(query_matrix)
    _log_above_max_mz(query_above, _input_label(queries, query_label, "queries"), max_mz)
    library_above = PeaksAboveMaxMz()
    n_queries = len(query_matrix)
    best = (np.zeros((n_queries, 0), dtype=np.int64), np.zeros((n_queries, 0)), np.zeros((n_queries, 0), np.int64))
    hit_metadata: dict[int, dict] = {}
    first_row = n_library = 0 if library_rows is None else int(library_rows[0])
    if library_rows is not None and expected_library_size is None:
        expected_library_size = int(library_rows[1]) - first_row
    total = expected_library_size if expected_library_size is not None or not progress else _library_total(library)
    bar = tqdm(total=total, unit="spectra", desc="searching", disable=not progress, dynamic_ncols=True)
    for block in iter_library_blocks(library, library_block_size, max_mz, mz_power, intensity_power,
                                     reuse_buffers=True, rows=library_rows):  # each block done before the next
        width = min(top_k, best[0].shape[1] + len(block))
        merged = tuple(np.zeros((n_queries, width), dtype=part.dtype) for part in best)
        # once every query has top_k hits, entries below the k-th score cannot be hits: skip selecting among them
        floor = (best[1][:, -1] - _FLOOR_MARGIN).astype(np.float32) if top_k and best[1].shape[1] == top_k else None
        for start, top, top_scores, matches in iter_search_blocks(query_matrix, block, top_k, block_size,
                                                                  mass_window, floor):
            rows = slice(start, start + len(top))
            for target, values in zip(merged, _merge_top_k(tuple(part[rows] for part in best),
                                                           (top + n_library, top_scores, matches), top_k)):
                target[rows] = values
        for index in np.unique(merged[0]).tolist():
            if index >= n_library:
                hit_metadata[index] = block.metadata[index - n_library]
        best = merged
        n_library += len(block)
        library_above += PeaksAboveMaxMz.of(block)
        hit_metadata = {index: hit_metadata[index] for index in np.unique(best[0]).tolist()}
        bar.update(len(block))
    bar.close()
    hits: list[list[Hit]] = []
    n_library -= first_row
    for indices, scores, counts in zip(*(part.tolist() for part in best)):
        row = []
        for index, score, count in zip(indices, scores, counts):
            if score < 0:  # outside the mass window
                break
            meta = hit_metadata[index]
            row.append(
                Hit(
                    rank=len(row) + 1,
                    library_index=index,
                    score=score,
                    matched_peaks=count,
                    name=meta["name"],
                    inchikey=meta["inchikey"],
                    smiles=meta["smiles"],
                    spectrum_id=meta["spectrum_id"],
                )
            )
        hits.append(row)
    _log_above_max_mz(library_above, _input_label(library, library_label, "library"), max_mz)
    return SearchResult(hits=hits, queries=list(query_matrix.metadata), n_queries=n_queries, n_library=n_library,
                        max_mz=int(max_mz), query_above_max_mz=query_above, library_above_max_mz=library_above)


def merge_search_results(results: Sequence[SearchResult], top_k: int) -> SearchResult:
    """The hits of a library searched in parts (shards of rows, :func:`search_library`'s ``library_rows``).

    Each query keeps the ``top_k`` best of its hits over the parts, in :func:`search_library`'s order (descending
    score, ties by ascending library index), so the parts of one index give the hits of one search of it. The
    parts must hold the same queries; their library sizes and peaks above ``max_mz`` add up.
    """
    if not results:
        raise ValueError("no search results to merge")
    first = results[0]
    if any(result.n_queries != first.n_queries or result.max_mz != first.max_mz for result in results):
        raise ValueError("the search results to merge hold other queries or another max_mz")
    hits = []
    for query in range(first.n_queries):
        pooled = sorted((hit for result in results for hit in result.hits[query]),
                        key=lambda hit: (-hit.score, hit.library_index))[:top_k]
        hits.append([replace(hit, rank=rank) for rank, hit in enumerate(pooled, start=1)])
    library_above = PeaksAboveMaxMz()
    for result in results:
        library_above += result.library_above_max_mz
    return SearchResult(hits=hits, queries=first.queries, n_queries=first.n_queries,
                        n_library=sum(result.n_library for result in results), max_mz=first.max_mz,
                        query_above_max_mz=first.query_above_max_mz, library_above_max_mz=library_above)


def _library_total(library: SpectraInput) -> int | None:
    """Spectra in the library for a progress bar: a file's records counted (:func:`library_file_size`), a list's
    length, or ``None``."""
    if isinstance(library, str | os.PathLike):
        return library_file_size(library)
    return len(library) if hasattr(library, "__len__") else None


def library_file_size(path: str | os.PathLike) -> int | None:
    """About how many spectra an MSP/MGF file (optionally .gz) holds, from one fast pass, or a library index holds;
    ``None`` if unreadable."""
    if is_library_index(path):
        try:
            with LibraryIndex(path) as index:
                return len(index)
        except (OSError, LibraryIndexError):  # the search reports it
            return None
    return spectra_file_size(path)


def _input_label(spectra: SpectraInput, label: str | None, default: str) -> str:
    """How the warnings of :func:`search_library` name an input: ``label``, a path's file name, or ``default``."""
    if label:
        return label
    if isinstance(spectra, str | os.PathLike):
        return Path(spectra).name
    return default


def _log_above_max_mz(above: PeaksAboveMaxMz, label: str, max_mz: int) -> None:
    if above.peaks:
        logger.warning("%s", above.message(label, max_mz))
