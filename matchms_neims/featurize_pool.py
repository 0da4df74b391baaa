"""Featurisation in worker processes, overlapped with the model (``NeimsPredictor(featurize_workers=N)``).

RDKit holds Python's global interpreter lock, so a thread cannot featurise while the model runs; a worker
process can. The workers featurise chunks of molecules and send back, in input order, each molecule's
identity and its fingerprint as compact non-zero entries (:func:`~matchms_neims.featurize.compact_features`,
about 200 bytes instead of 24 kB), while the main process runs the model on the chunks already done.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from matchms_neims.chemistry import MoleculeError
from matchms_neims.featurize import FeaturizedMolecule, Featurizer, compact_features, expand_features

#: ``(positions in the chunk, featurized molecules, errors)`` of one chunk.
FeaturizedChunk = tuple[list[int], list[FeaturizedMolecule], list[MoleculeError]]


def featurize_chunk(featurizer: Featurizer, molecules: Sequence) -> FeaturizedChunk:
    """Featurize ``molecules`` (objects with ``smiles`` and ``record``); bad ones become errors, never fatal."""
    positions, featurized, errors = [], [], []
    for position, molecule in enumerate(molecules):
        try:
            featurized.append(featurizer(molecule.smiles, molecule.record))
            positions.append(position)
        except MoleculeError as error:
            errors.append(error)
    return positions, featurized, errors


_worker_featurizer: Featurizer | None = None


def _start_worker(featurizer: Featurizer) -> None:
    global _worker_featurizer
    _worker_featurizer = featurizer


def _compact_if_lossless(features):
    """Compact entries (int32) of a fingerprint when they give it back exactly; else the features unchanged."""
    if not isinstance(features, np.ndarray):
        return features
    compact = compact_features(features)
    return compact if np.array_equal(expand_features(compact, features.size), features) else features


def _expanded(features, size: int):
    return expand_features(features, size) if isinstance(features, np.ndarray) and features.dtype == np.int32 \
        else features


def _featurize_in_worker(molecules: list[tuple[str, str]]) -> tuple[list[int], list, list[MoleculeError]]:
    """A chunk of ``(smiles, record)`` featurized in a worker, with fingerprints sent as compact entries."""
    inputs = [_Molecule(smiles, record) for smiles, record in molecules]
    positions, featurized, errors = featurize_chunk(_worker_featurizer, inputs)
    return positions, [(item.info, _compact_if_lossless(item.features)) for item in featurized], errors


class _Molecule:
    __slots__ = ("smiles", "record")

    def __init__(self, smiles: str, record: str):
        self.smiles = smiles
        self.record = record


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
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(workers, initializer=_start_worker, initargs=(featurizer,))

    def imap(self, chunks: Iterable[Sequence]) -> Iterator[FeaturizedChunk]:
        """Featurize chunks of molecules (objects with ``smiles`` and ``record``), yielded in order as they finish.

        Workers run ahead of the consumer, so the caller's work on one chunk overlaps the featurisation of
        the next ones.
        """
        size = self.featurizer.size
        payloads = ([(molecule.smiles, molecule.record) for molecule in chunk] for chunk in chunks)
        for positions, compact, errors in self._pool.imap(_featurize_in_worker, payloads):
            featurized = [FeaturizedMolecule(info, _expanded(features, size)) for info, features in compact]
            yield positions, featurized, errors

    def close(self) -> None:
        """Stop the workers."""
        self._pool.terminate()
        self._pool.join()


__all__ = ["FeaturizedChunk", "FeaturizerPool", "featurize_chunk"]
