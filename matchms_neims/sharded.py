"""Library generation in shards over several processes, devices and nodes, resumable (``predict --devices N``).

The molecule list is cut into consecutive shards of ``shard_size`` molecules. Lightning's
``Trainer.predict`` runs one process per device (CPU processes or GPUs, on one or several nodes); rank ``r``
of ``w`` predicts the shards ``i`` with ``i % w == r`` and writes each as a library file of its own,
atomically, next to the output (``<output>.shards/``). When every shard is there, rank 0 concatenates them in
order into the output and the per-shard error lists into the error report, and removes the shards.

A shard counts as finished when its summary (``shard-N.json``, written after its library and error list)
exists. A run that was killed is continued with ``resume=True``: finished shards are skipped, and the
merged library is the same as that of an uninterrupted run. The shard folder keeps a manifest of the
input, model and settings; resuming with others is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from matchms_neims.chemistry import molecule_problem
from matchms_neims.io import read_molecules
from matchms_neims.library import LibrarySummary, build_library, duplicate_reason
from matchms_neims.predictor import NeimsPredictor
from matchms_neims.problems import MOLECULE_COLUMNS, RecordProblem, read_problems, write_problems
from matchms_neims.utils import atomic_output, file_sha256

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class ShardJob:
    """What a sharded prediction writes, and how."""

    molecules: str
    output: str
    file_format: str
    shard_size: int = 10_000
    batch_size: int = 512
    chunk_size: int = 4096
    min_relative_intensity: float = 0.001
    skip_duplicates: bool = True  # within each shard, then across shards when they are merged

    @property
    def shard_dir(self) -> Path:
        return Path(f"{self.output}.shards")

    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:06d}.{self.file_format}"

    def errors_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:06d}.errors.tsv"

    def keys_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:06d}.keys.json"

    def summary_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:06d}.json"

    def is_finished(self, index: int) -> bool:
        return self.summary_path(index).is_file()


def _input_identity(path: str) -> dict:
    """The input file by path and content (an edit that keeps the size and the mtime still differs)."""
    return {"path": str(Path(path).resolve()), "size": os.stat(path).st_size, "sha256": file_sha256(path)}


def _model_identity(predictor: NeimsPredictor) -> dict:
    identity = {"name": predictor.model_name, "version": predictor.model_version, "backend": predictor.backend,
                "uncertainty_samples": predictor.uncertainty_samples}
    if predictor.model_path is not None:
        identity["sha256"] = file_sha256(predictor.model_path)
    return identity


def manifest(job: ShardJob, predictor: NeimsPredictor) -> dict:
    """The input file, model and settings the shards were made with.

    The batch and chunk sizes are part of it: they decide which molecules share a forward pass, and so
    the last bit of rounding of the spectra.
    """
    settings = asdict(job)
    return {"input": _input_identity(job.molecules), "model": _model_identity(predictor),
            "settings": {key: settings[key] for key in ("file_format", "shard_size", "batch_size", "chunk_size",
                                                             "min_relative_intensity", "skip_duplicates")}}


def prepare_shard_dir(job: ShardJob, predictor: NeimsPredictor, resume: bool) -> None:
    """Create the shard folder with its manifest, or check it when resuming (a fresh run starts it over)."""
    open_shard_dir(job.shard_dir, manifest(job, predictor), resume, job.output)


def open_shard_dir(shard_dir: Path, wanted: dict, resume: bool, output: str | os.PathLike) -> None:
    """The shard folder of a sharded run (prediction or search) writing ``output``: created with the ``wanted``
    manifest, or, when resuming, checked against it (finished shards, ``shard-NNNNNN.json``, are then kept).

    Raises
    ------
    ValueError
        When resuming a run whose manifest differs (another input, model or setting); it names what differs.
    """
    path = shard_dir / MANIFEST
    if resume and path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            changed = sorted(key for key in wanted if found.get(key) != wanted[key])
            raise ValueError(f"cannot resume {output}: the {', '.join(changed)} differ from those of the "
                             f"unfinished run in {shard_dir}; run without --resume to start over")
        logger.info("resuming: %d finished shards in %s", len(list(shard_dir.glob("shard-??????.json"))), shard_dir)
        return
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True)
    with atomic_output(path) as handle:
        json.dump(wanted, handle, indent=2)


class ShardStream(IterableDataset):
    """``(shard_index, molecules)`` of the shards of one rank, read in one pass over the molecule file.

    Finished shards are skipped (their molecules are still read past). After a full pass ``n_shards`` holds
    the number of shards of the whole file.
    """

    def __init__(self, job: ShardJob, rank: int = 0, world_size: int = 1):
        self.job = job
        self.rank = rank
        self.world_size = world_size
        self.n_shards: int | None = None

    def __iter__(self) -> Iterator[tuple[int, list]]:
        molecules = read_molecules(self.job.molecules)
        index = 0
        while shard := list(islice(molecules, self.job.shard_size)):
            if index % self.world_size == self.rank and not self.job.is_finished(index):
                yield index, shard
            index += 1
        self.n_shards = index


class ShardPredictor(L.LightningModule):
    """Lightning wrapper: ``predict_step`` predicts one shard and writes it (library and error list)."""

    def __init__(self, predictor: NeimsPredictor, job: ShardJob):
        super().__init__()
        self.predictor = predictor
        self.model = predictor.loaded.model  # a submodule, so that Lightning moves it to this rank's device
        self.job = job
        self.stream: ShardStream | None = None

    def predict_dataloader(self) -> DataLoader:
        self.stream = ShardStream(self.job, self.global_rank, self.trainer.world_size)
        return DataLoader(self.stream, batch_size=None)

    def on_predict_start(self) -> None:
        self.predictor.to(self.device)

    def predict_step(self, batch, batch_idx: int) -> dict:
        index, molecules = batch
        written: list = []
        summary = build_library(molecules, self.job.shard_path(index), self.job.file_format, self.predictor,
                                self.job.batch_size, self.job.chunk_size, self.job.errors_path(index),
                                self.job.min_relative_intensity, progress=False,
                                skip_duplicates=self.job.skip_duplicates, written=written)
        with atomic_output(self.job.keys_path(index)) as handle:  # for the duplicates across shards
            json.dump(written, handle)
        counts = {"n_input": summary.n_input, "n_written": summary.n_written}
        with atomic_output(self.job.summary_path(index)) as handle:
            json.dump(counts, handle)
        logger.info("rank %d: shard %d: %d of %d molecules predicted", self.global_rank, index, summary.n_written,
                    summary.n_input)
        return {"shard": index, **counts}

    def on_predict_end(self) -> None:
        self.trainer.strategy.barrier("shards written")


def _shard_records(path: Path, file_format: str) -> list[str]:
    """The records of a shard as written, each with its trailing blank line (metadata never holds one)."""
    text = path.read_text(encoding="utf-8")
    end = "\n\n" if file_format == "msp" else "END IONS\n\n"
    parts = text.split(end)
    if parts[-1]:
        raise ValueError(f"{path} does not end with a complete record")
    return [part + end for part in parts[:-1]]


def merge_shards(job: ShardJob, n_shards: int, errors_path: str | os.PathLike | None = None) -> LibrarySummary:
    """Concatenate the shards in order into the output (atomically) and their errors into ``errors_path``.

    With ``skip_duplicates``, a molecule already written by an earlier shard is left out and listed as a
    duplicate, as in a plain run, so that plain, sharded and resumed runs write the same library.

    Raises
    ------
    ValueError
        When a shard is missing (its process failed): rerun with ``resume=True``.
    """
    missing = [index for index in range(n_shards) if not job.is_finished(index)]
    if missing:
        raise ValueError(f"{len(missing)} of {n_shards} shards are missing in {job.shard_dir} (first: {missing[0]}); "
                         "rerun with --resume to predict them")
    errors: list[RecordProblem] = []
    first_record_of: dict[str, str] = {}  # molecule key -> record written for it, over all shards
    n_input = n_written = 0
    with atomic_output(job.output) as output:
        for index in range(n_shards):
            written = json.loads(job.keys_path(index).read_text())
            records = _shard_records(job.shard_path(index), job.file_format)
            if len(records) != len(written):
                raise ValueError(f"shard {index} in {job.shard_dir} holds {len(records)} records but lists "
                                 f"{len(written)}; rerun without --resume")
            errors.extend(read_problems(job.errors_path(index)))
            kept = []
            for text, (key, key_is_inchikey, record, smiles) in zip(records, written):
                if job.skip_duplicates and key in first_record_of:  # a duplicate of a molecule of an earlier shard
                    errors.append(molecule_problem(record, duplicate_reason(first_record_of[key], key, key_is_inchikey),
                                                   smiles))
                    continue
                first_record_of.setdefault(key, record)
                kept.append(text)
            output.write("".join(kept))
            n_written += len(kept)
            n_input += json.loads(job.summary_path(index).read_text())["n_input"]
    if errors_path is not None:
        errors_path = write_problems(errors, errors_path, MOLECULE_COLUMNS)
    shutil.rmtree(job.shard_dir)
    return LibrarySummary(n_input=n_input, n_written=n_written, n_failed=n_input - n_written, output=Path(job.output),
                          errors_path=errors_path, errors=errors, file_format=job.file_format)


def predict_sharded(molecules: str | os.PathLike, output: str | os.PathLike, predictor: NeimsPredictor,
                    file_format: str | None = None, devices: int | str = 1, num_nodes: int = 1,
                    accelerator: str = "cpu", shard_size: int = 10_000, batch_size: int = 512, chunk_size: int = 4096,
                    errors_path: str | os.PathLike | None = None, min_relative_intensity: float = 0.001,
                    resume: bool = False, progress: bool = True, skip_duplicates: bool = True
                    ) -> LibrarySummary | None:
    """Predict a library in shards with Lightning over ``devices`` x ``num_nodes`` processes, then merge.

    Parameters
    ----------
    molecules
        Molecule file (any format :func:`~matchms_neims.library.read_molecules` reads).
    output
        Library to write (MSP or MGF).
    predictor
        The model; every process gets a copy on its device.
    devices, num_nodes, accelerator
        Lightning's ``Trainer`` settings: ``devices=4, accelerator="gpu"`` runs four GPUs;
        ``accelerator="cpu"`` with ``devices=N`` runs N CPU processes (DDP).
    shard_size
        Molecules per shard: the unit of work, of output files and of resumption.
    resume
        Continue an interrupted run: finished shards are kept (the input, model and settings must match).
    skip_duplicates
        Skip molecules already written in the same shard (see :func:`~matchms_neims.library.build_library`).

    Returns
    -------
    LibrarySummary or None
        The summary on global rank 0; ``None`` on the other ranks.
    """
    from matchms_neims.io import detect_format

    start = time.perf_counter()
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    file_format = (file_format or detect_format(output)).lower()
    job = ShardJob(str(molecules), str(output), file_format, shard_size, batch_size, chunk_size,
                   min_relative_intensity, skip_duplicates)
    if not Path(job.molecules).is_file():
        raise FileNotFoundError(f"molecule file not found: {job.molecules}")
    module = ShardPredictor(predictor, job)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        use_distributed_sampler=False)
    if trainer.is_global_zero:  # before the other ranks of this node are launched, or join the process group
        prepare_shard_dir(job, predictor, resume)
    trainer.predict(module, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    summary = merge_shards(job, module.stream.n_shards, errors_path)
    summary.elapsed = time.perf_counter() - start
    return summary
