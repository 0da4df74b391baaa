"""Inference timing: the latency of one molecule at a time and the throughput of batches, for a predictor.

:mod:`matchms_neims.benchmark` (``matchms-neims benchmark``) runs these per model and backend in fresh processes;
:mod:`matchms_neims.evaluation` reports them beside the accuracy of a model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from matchms_neims.io import MoleculeInput


def latency_summary(milliseconds: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and percentiles (50, 95, 99) of latencies in milliseconds."""
    values = np.asarray(milliseconds, dtype=float)
    return {"mean_ms": float(values.mean()), "std_ms": float(values.std()), "p50_ms": float(np.median(values)),
            "p95_ms": float(np.percentile(values, 95)), "p99_ms": float(np.percentile(values, 99))}


def single_molecule_latency(predictor, smiles: Sequence[str]) -> dict[str, dict[str, float]]:
    """Latency of predicting one molecule at a time, with and without featurisation.

    ``with_featurization`` times :meth:`NeimsPredictor.predict` (SMILES in, peaks out); ``model_only``
    times the model on an already featurised molecule, peaks included. One warm-up call comes first.

    Returns
    -------
    dict
        ``{"with_featurization": summary, "model_only": summary}`` (:func:`latency_summary`) and
        ``n_molecules``, the number of molecules timed (those the predictor can featurise).
    """
    positions, featurized, _ = predictor.featurize([_molecule(smi) for smi in smiles])
    usable = [smiles[position] for position in positions]
    if not usable:
        raise ValueError("none of the benchmark molecules can be featurised by this model")
    predictor.predict(usable[0])
    with_featurization = []
    for smi in usable:
        start = time.perf_counter()
        predictor.predict(smi)
        with_featurization.append((time.perf_counter() - start) * 1000)
    model_only = []
    for item in featurized:
        start = time.perf_counter()
        predictor.predict_features([item])
        model_only.append((time.perf_counter() - start) * 1000)
    return {"n_molecules": len(usable), "with_featurization": latency_summary(with_featurization),
            "model_only": latency_summary(model_only)}


def batch_throughput(predictor, smiles: Sequence[str], batch_size: int) -> float:
    """Molecules per second of one :meth:`NeimsPredictor.predict_batch` call with model batches of ``batch_size``.

    Featurisation is included. The call gets ``max(2048, 256 * batch_size)`` molecules (at most all of
    ``smiles``), so that large batches come many times, as in a library build; a warm-up call of two
    batches comes first. Featurisation workers, if any, must be started already
    (:meth:`NeimsPredictor.start_featurize_workers`, as :func:`run_case` does).
    """
    predictor.predict_batch(smiles[: 2 * batch_size], batch_size=batch_size)  # warm-up at this batch shape
    molecules = list(smiles[: max(2048, 256 * batch_size)])
    start = time.perf_counter()
    done = len(predictor.predict_batch(molecules, batch_size=batch_size).vectors)
    return done / (time.perf_counter() - start)


def _molecule(smiles: str) -> MoleculeInput:
    return MoleculeInput(smiles, "", smiles)
