"""Exact search of a library index in shards over several processes and nodes, resumable (``search --devices N``).

The library is one index (:mod:`matchms_neims.library_index`) or a folder of them, whose ``*.nidx`` files, in name
order, are one library with its rows numbered through them (an index made of shards, each built on its own node:
docs/performance.md). The rows of each file are cut into consecutive shards of ``shard_entries`` rows, a multiple
of ``library_block_size``. Lightning's ``Trainer.predict`` runs one process per
device (CPU processes, on one or several nodes), as sharded prediction does (:mod:`matchms_neims.sharded`); rank
``r`` of ``w`` searches the shards ``i`` with ``i % w == r`` (:func:`~matchms_neims.search.search_library` with
``library_rows``) and writes each shard's top ``k`` per query, atomically, next to the output
(``<output>.shards/shard-N.json``). When every shard is there, rank 0 merges them
(:func:`~matchms_neims.search.merge_search_results`) into the hits table and removes the shards.

The hits are those of one process: a shard starts on a multiple of the block size, so its blocks, and so every
score, are those of a plain search; the merge keeps the same order (descending score, ties by ascending index).
Every process reads the queries and memory-maps the index, so on a cluster the index lies on a shared file system
(or a copy per node at the same path). Each process's NumPy uses ``cores / devices`` threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader

from matchms_neims.library_index import LibraryIndex
from matchms_neims.search import (
    Hit,
    PeaksAboveMaxMz,
    SearchResult,
    merge_search_results,
    search_library,
)
from matchms_neims.sharded import open_shard_dir
from matchms_neims.spectral_matrix import SpectralMatrix
from matchms_neims.utils import atomic_output, available_cores, file_sha256

logger = logging.getLogger(__name__)


def index_files(library: str | os.PathLike) -> list[Path]:
    """The index files of a library: the file itself, or the ``*.nidx`` files of a folder in name order.

    Raises
    ------
    ValueError
        When a folder holds no index file.
    """
    path = Path(library)
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("*.nidx"))
    if not files:
        raise ValueError(f"{path} holds no library index (*.nidx): build them with `matchms-neims index`")
    return files


@dataclass
class SearchShardJob:
    """What a sharded search reads and writes, and how (``index``: one index file or a folder of them)."""

    queries: str
    index: str
    output: str
    top_k: int = 10
    max_mz: int = 1000
    mz_power: float = 1.0
    intensity_power: float = 0.5
    mass_window: float | None = None
    library_block_size: int = 100_000
    shard_entries: int = 1_000_000

    @property
    def shard_dir(self) -> Path:
        return Path(f"{self.output}.shards")

    def shard_path(self, number: int) -> Path:
        return self.shard_dir / f"shard-{number:06d}.json"

    def is_finished(self, number: int) -> bool:
        return self.shard_path(number).is_file()

    def shards(self, lengths: list[int]) -> list[tuple[int, int, int, int]]:
        """``(file, start, stop, offset)`` of every shard: rows ``start..stop`` of index file ``file``, whose first
        row is row ``offset`` of the whole library (an empty library has one empty shard)."""
        shards, offset = [], 0
        for number, length in enumerate(lengths):
            shards += [(number, start, min(start + self.shard_entries, length), offset)
                       for start in range(0, length, self.shard_entries)]
            offset += length
        return shards or [(0, 0, 0, 0)]


def manifest(job: SearchShardJob, files: list[Path]) -> dict:
    """The queries (by content), the index files (by path, size and modification time) and the settings of a run."""
    queries = Path(job.queries)
    settings = asdict(job)
    del settings["queries"], settings["index"], settings["output"]
    return {"queries": {"path": str(queries.resolve()), "size": queries.stat().st_size,
                        "sha256": file_sha256(queries)},
            "index": [{"path": str(path.resolve()), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
                      for path in files],
            "settings": settings}


def result_to_json(result: SearchResult) -> dict:
    """A :class:`SearchResult` as JSON-ready values (floats round-trip exactly through :mod:`json`)."""
    values = asdict(result)
    values["hits"] = [[asdict(hit) for hit in row] for row in result.hits]
    return values


def result_from_json(values: dict) -> SearchResult:
    """The :class:`SearchResult` of :func:`result_to_json`."""
    values = dict(values)
    values["hits"] = [[Hit(**hit) for hit in row] for row in values["hits"]]
    values["query_above_max_mz"] = PeaksAboveMaxMz(**values["query_above_max_mz"])
    values["library_above_max_mz"] = PeaksAboveMaxMz(**values["library_above_max_mz"])
    return SearchResult(**values)


class ShardSearcher(L.LightningModule):
    """Lightning wrapper: ``predict_step`` searches one shard of the index and writes its hits."""

    def __init__(self, job: SearchShardJob, files: list[Path], shards: list[tuple[int, int, int, int]],
                 problems: list | None = None):
        super().__init__()
        self.job = job
        self.files = files
        self.shards = shards
        self.problems = problems  # bad query records, collected by every rank (reported by rank 0)
        self.queries: SpectralMatrix | None = None
        self.opened: dict[int, LibraryIndex] = {}
        self.threads = 1

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.global_rank, self.trainer.world_size
        mine = [number for number in range(len(self.shards))
                if number % world == rank and not self.job.is_finished(number)]
        return DataLoader(mine, batch_size=None)

    def on_predict_start(self) -> None:
        from matchms_neims.io import iter_records

        self.threads = max(1, available_cores() // max(1, self.trainer.num_devices))
        self.queries = SpectralMatrix.from_records(iter_records(self.job.queries, self.problems), self.job.max_mz,
                                                   self.job.mz_power, self.job.intensity_power)

    def predict_step(self, batch, batch_idx: int) -> dict:
        number = int(batch)
        file, first, last, offset = self.shards[number]
        if file not in self.opened:
            self.opened[file] = LibraryIndex(self.files[file])
        start = time.perf_counter()
        with threadpool_limits(limits=self.threads):
            result = search_library(self.queries, self.opened[file], top_k=self.job.top_k,
                                    mz_power=self.job.mz_power, intensity_power=self.job.intensity_power,
                                    max_mz=self.job.max_mz, library_block_size=self.job.library_block_size,
                                    mass_window=self.job.mass_window, library_rows=(first, last))
        for hits in result.hits:  # rows of the whole library
            hits[:] = [replace(hit, library_index=hit.library_index + offset) for hit in hits]
        with atomic_output(self.job.shard_path(number)) as handle:
            json.dump(result_to_json(result), handle)
        logger.info("rank %d: shard %d (%s rows %d..%d) searched in %.1f s with %d threads", self.global_rank,
                    number, self.files[file].name, first, last, time.perf_counter() - start, self.threads)
        return {"shard": number}

    def on_predict_end(self) -> None:
        for opened in self.opened.values():
            opened.close()
        self.trainer.strategy.barrier("shards searched")


def merge_shard_results(job: SearchShardJob, n_shards: int) -> SearchResult:
    """The hits of every shard merged.

    Raises
    ------
    ValueError
        When a shard is missing (its process failed): rerun with ``resume=True``.
    """
    numbers = range(n_shards)
    missing = [number for number in numbers if not job.is_finished(number)]
    if missing:
        raise ValueError(f"{len(missing)} of {len(numbers)} shards are missing in {job.shard_dir} (first: "
                         f"{missing[0]}); rerun with --resume to search them")
    return merge_search_results([result_from_json(json.loads(job.shard_path(number).read_text()))
                                 for number in numbers], job.top_k)


def search_sharded(queries: str | os.PathLike, index: str | os.PathLike, output: str | os.PathLike,
                   top_k: int = 10, max_mz: int | None = None, mz_power: float | None = None,
                   intensity_power: float | None = None, mass_window: float | None = None,
                   library_block_size: int = 100_000, shard_entries: int | None = None, devices: int | str = 1,
                   num_nodes: int = 1, resume: bool = False, progress: bool = True,
                   problems: list | None = None) -> SearchResult | None:
    """Search a library index in shards with Lightning over ``devices`` x ``num_nodes`` CPU processes.

    Parameters
    ----------
    queries
        Query spectra (MSP/MGF).
    index
        The library index (``matchms-neims index``), or a folder of index files that are one library (in name
        order, rows numbered through them; all built with the same settings). Its weighting and ``max_mz`` are
        taken for those not given.
    output
        Hits table (TSV) that rank 0 writes, atomically; the shards live in ``<output>.shards/`` until then.
    shard_entries
        Index rows per shard, the unit of work and of resumption; a multiple of ``library_block_size`` (default:
        the rows cut into ``2 x`` the number of processes, rounded up to whole blocks).
    devices, num_nodes
        Lightning's ``Trainer`` settings: processes per node, and nodes (a cluster launcher such as SLURM or
        ``torchrun`` sets the ranks).
    resume
        Continue an interrupted run: finished shards are kept (queries, index and settings must match).
    problems
        List that receives this process's unreadable query records.

    Returns
    -------
    SearchResult or None
        The merged hits on global rank 0 (also written to ``output``); ``None`` on the other ranks.
    """
    files = index_files(index)
    lengths, settings = [], set()
    for path in files:
        with LibraryIndex(path) as opened:
            lengths.append(len(opened))
            settings.add(opened.settings)
    if len(settings) > 1:
        raise ValueError(f"the index files of {index} were built with different settings (max_mz, mz_power, "
                         f"intensity_power): {sorted(settings)}; rebuild them alike")
    built = settings.pop()
    max_mz, mz_power, intensity_power = (built[0] if max_mz is None else max_mz,
                                         built[1] if mz_power is None else mz_power,
                                         built[2] if intensity_power is None else intensity_power)
    if library_block_size < 1:
        raise ValueError(f"library_block_size must be at least 1, got {library_block_size}")
    trainer = L.Trainer(accelerator="cpu", devices=devices, num_nodes=num_nodes, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        use_distributed_sampler=False)
    if shard_entries is None:
        blocks = -(-max(1, sum(lengths)) // library_block_size)
        shard_entries = library_block_size * max(1, -(-blocks // (2 * trainer.world_size)))
    if shard_entries < 1 or shard_entries % library_block_size:
        raise ValueError(f"shard_entries ({shard_entries}) must be a positive multiple of library_block_size "
                         f"({library_block_size}), so that the shards' blocks are those of one search")
    job = SearchShardJob(str(queries), str(index), str(output), top_k, int(max_mz), float(mz_power),
                         float(intensity_power), mass_window, library_block_size, shard_entries)
    with LibraryIndex(files[0]) as opened:  # the files share their settings (above): they must be the search's
        opened.check_settings(job.max_mz, job.mz_power, job.intensity_power)
    shards = job.shards(lengths)
    if trainer.is_global_zero:  # before the other ranks of this node are launched, or join the process group
        open_shard_dir(job.shard_dir, manifest(job, files), resume, job.output)
    trainer.predict(ShardSearcher(job, files, shards, problems), return_predictions=False)
    if not trainer.is_global_zero:
        return None
    result = merge_shard_results(job, len(shards))
    result.to_tsv(job.output)
    shutil.rmtree(job.shard_dir)
    return result
