"""Featurisation in worker processes, overlapped with the model (``NeimsPredictor(featurize_workers=N)``).

RDKit holds Python's global interpreter lock, so a thread cannot featurise while the model runs; a worker
process can. The workers featurise chunks of molecules and send back, in input order, each molecule's
identity and its fingerprint as compact non-zero entries (:func:`~matchms_neims.featurize.compact_features`,
about 200 bytes instead of 24 kB), while the main process runs the model on the chunks already done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from matchms_neims.chemistry import MoleculeError, molecule_problem
from matchms_neims.featurize import FeaturizedMolecule, Featurizer, compact_features, expand_features
from matchms_neims.problems import RecordProblem

logger = logging.getLogger(__name__)

#: ``(positions in the chunk, featurized molecules, problems of the others)`` of one chunk.
FeaturizedChunk = tuple[list[int], list[FeaturizedMolecule], list[RecordProblem]]


def featurize_chunk(featurizer: Featurizer, molecules: Sequence) -> FeaturizedChunk:
    """Featurize ``molecules`` (objects with ``smiles`` and ``record``, and optionally ``problem``: why the reader
    could not read the record); bad ones become :class:`~matchms_neims.problems.RecordProblem` with their SMILES,
    never fatal."""
    positions, featurized, errors = [], [], []
    for position, molecule in enumerate(molecules):
        problem = getattr(molecule, "problem", "")
        if problem:
            errors.append(molecule_problem(molecule.record, problem, molecule.smiles))
            continue
        try:
            featurized.append(featurizer(molecule.smiles, molecule.record))
            positions.append(position)
        except MoleculeError as error:
            errors.append(error.problem(molecule.smiles))
    return positions, featurized, errors


_worker_featurizer: Featurizer | None = None


def _start_worker(featurizer: Featurizer) -> None:
    global _worker_featurizer
    _worker_featurizer = featurizer
    die_with_parent()


def die_with_parent() -> None:
    """Ask Linux to end this process when its parent dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``).

    Without it a featurisation worker whose parent was killed stays behind, blocked writing to a pipe that
    nobody reads. Elsewhere (no prctl) the workers still end when the parent closes the pool.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # an unusual libc: keep the default
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


class _Pickled(bytes):
    """Features (a molecular graph) pickled in the worker with the plain pickler.

    Sent as they are, torch tensors would travel as shared-memory file descriptors, and with thousands of
    graphs in flight the receiving end runs out of them ("received 0 items of ancdata").
    """


def _compact_if_lossless(features):
    """Compact entries (int32) of a fingerprint when they give it back exactly; graphs as :class:`_Pickled`."""
    if not isinstance(features, np.ndarray):
        return _Pickled(pickle.dumps(features, protocol=pickle.HIGHEST_PROTOCOL))
    compact = compact_features(features)
    return compact if np.array_equal(expand_features(compact, features.size), features) else features


def _expanded(features, size: int):
    if isinstance(features, _Pickled):
        return pickle.loads(features)
    return expand_features(features, size) if features.dtype == np.int32 else features


def _featurize_in_worker(molecules: list[tuple[str, str, str]]) -> tuple[list[int], list, list[RecordProblem]]:
    """A chunk of ``(smiles, record, problem)`` featurized in a worker, with fingerprints sent as compact entries."""
    inputs = [_Molecule(smiles, record, problem) for smiles, record, problem in molecules]
    positions, featurized, errors = featurize_chunk(_worker_featurizer, inputs)
    return positions, [(item.info, _compact_if_lossless(item.features)) for item in featurized], errors


class _Molecule:
    __slots__ = ("smiles", "record", "problem")

    def __init__(self, smiles: str, record: str, problem: str = ""):
        self.smiles = smiles
        self.record = record
        self.problem = problem


class FeaturizerPool:
    """Worker processes that featurize chunks of molecules for one :class:`Featurizer`.

    Parameters
    ----------
    featurizer
        The featurizer every worker uses.
    workers
        Number of worker processes (started with ``spawn``, so the pool is safe beside PyTorch's threads).
    """

    def __init__(self, featurizer: Featurizer, workers: int):
        if workers < 1:
            raise ValueError(f"a featurizer pool needs at least one worker, got {workers}")
        self.featurizer = featurizer
        self.workers = workers
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(self.featurizer,))

    def imap(self, chunks: Sequence[Sequence]) -> Iterator[FeaturizedChunk]:
        """Featurize chunks of molecules (objects with ``smiles`` and ``record``), yielded in order as they finish.

        All chunks are handed to the workers when this is called (not when iteration starts), so that the
        caller's work, on these chunks or on earlier ones, overlaps their featurisation. Should a worker
        process die, the pool is restarted and the chunks not yet returned are featurized in this process.
        """
        futures = [self._executor.submit(_featurize_in_worker, [
            (molecule.smiles, molecule.record, getattr(molecule, "problem", "")) for molecule in chunk])
            for chunk in chunks]
        return self._collect(chunks, futures)

    def _collect(self, chunks: Sequence[Sequence], futures: list) -> Iterator[FeaturizedChunk]:
        size = self.featurizer.size
        broken = False
        for chunk, future in zip(chunks, futures):
            if not broken:
                try:
                    positions, compact, errors = future.result()
                except BrokenProcessPool as error:
                    logger.warning("a featurisation worker died (%s); featurizing the rest of the batch here", error,
                                   exc_info=logger.isEnabledFor(logging.DEBUG))
                    broken = True
                    self._executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._start()
            if broken:
                yield featurize_chunk(self.featurizer, chunk)
                continue
            yield positions, [FeaturizedMolecule(info, _expanded(features, size)) for info, features in compact], errors

    def wait_until_ready(self) -> None:
        """Start every worker process (each imports RDKit and this package) and wait for them."""
        for future in [self._executor.submit(_featurize_in_worker, []) for _ in range(self.workers)]:
            future.result()

    def close(self) -> None:
        """Stop the workers."""
        self._executor.shutdown(wait=True, cancel_futures=True)


__all__ = ["FeaturizedChunk", "FeaturizerPool", "featurize_chunk"]
