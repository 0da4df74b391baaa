"""NeimsPredictor: SMILES -> predicted unit-resolution EI spectra (numpy vectors or matchms spectra)."""

from __future__ import annotations

import logging
import os
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matchms import Spectrum

from matchms_neims.backends import make_backend
from matchms_neims.checkpoint import LoadedModel, bundled_model_path, load_model
from matchms_neims.chemistry import MoleculeError, MoleculeInfo, parse_smiles
from matchms_neims.featurize import FeaturizedMolecule
from matchms_neims.featurize_pool import FeaturizedChunk, FeaturizerPool, featurize_chunk
from matchms_neims.io import MoleculeInput, as_molecule_input
from matchms_neims.metrics import uncertainty_score
from matchms_neims.predicted_metadata import predicted_spectrum_metadata
from matchms_neims.problems import ProblemLog, RecordProblem
from matchms_neims.spectra import normalize_base_peak, vector_to_peaks
from matchms_neims.subformulae import formula_counts

logger = logging.getLogger(__name__)

def _check_batch_size(batch_size) -> int:
    """``batch_size`` when it is a positive integer (ValueError otherwise): the predictor's and each call's."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


@dataclass
class PredictionBatch:
    """Predicted spectrum vectors (base peak 1) of the molecules that could be predicted.

    ``uncertainty`` (MC-dropout models asked for samples only) holds one score per molecule, see
    :func:`~matchms_neims.metrics.uncertainty_score`; ``sqrt_std`` the per-bin standard deviation in the model's
    sqrt-intensity space. ``expert_weights`` (mixture-of-experts models, deterministic prediction only) holds
    the mixing weight of every expert per molecule, shape ``(n_molecules, n_experts)``.
    """

    vectors: np.ndarray
    molecules: list[MoleculeInput]
    infos: list[MoleculeInfo]
    errors: list[RecordProblem]
    uncertainty: np.ndarray | None = None
    sqrt_mean: np.ndarray | None = None
    sqrt_std: np.ndarray | None = None
    expert_weights: np.ndarray | None = None

    def per_molecule(self, values: np.ndarray | None) -> Sequence:
        """``values`` (one row per predicted molecule) or ``None`` for each molecule when absent."""
        return values if values is not None else [None] * len(self.molecules)


def _to_intensities(sqrt_intensity: np.ndarray) -> np.ndarray:
    return normalize_base_peak(np.square(np.clip(sqrt_intensity, 0, None)))


class NeimsPredictor:
    """Predict EI mass spectra with a trained matchms-neims model.

    Parameters
    ----------
    model
        Path of a model file (``.pt`` written by ``matchms-neims train``); ``None`` loads the
        bundled default model.
    device
        ``"cpu"`` (default) or a torch device string.
    batch_size
        Molecules per forward pass.
    uncertainty_samples
        For models with MC-dropout uncertainty (the teacher): number of stochastic passes per molecule.
        The prediction is then the mean of the samples and every spectrum carries a
        ``prediction_uncertainty`` score (:func:`~matchms_neims.metrics.uncertainty_score`).
        0 (default): one deterministic pass.
    backend
        ``"torch"`` (default), ``"onnx"``: run fingerprint models (baseline, student) with onnxruntime,
        exported in memory and checked against PyTorch to 1e-4 when the predictor is created
        (:func:`matchms_neims.export.onnx_session`; needs ``pip install "matchms-neims[onnx]"``), or
        ``"onnx-int8"``: the same with the weights quantised to int8 (dynamic quantisation; checked to keep
        an m/z-weighted cosine of at least 0.98 to PyTorch's spectra on reference molecules).
    threads
        CPU threads of the onnxruntime backend (0: its default). For the torch backend use
        ``torch.set_num_threads``.
    featurize_workers
        Worker processes that featurize (RDKit) while the model runs, in :meth:`predict_batch` calls of at
        least :attr:`min_molecules_for_workers` molecules and more than one ``batch_size`` chunk (starting a
        worker takes about 2 s). 0 (default): featurize in this process, one chunk after the other. The
        spectra are the same either way. On 2 cores, 1 worker with 1 torch thread predicted 2,382
        molecules/s against 1,875 with no worker and 2 threads (docs/performance.md). Started on first use;
        :meth:`close` (or ``with``) stops them.

    Examples
    --------
    >>> from matchms_neims import NeimsPredictor
    >>> predictor = NeimsPredictor()
    >>> peaks = predictor.predict("CCO")
    >>> sorted(peaks)
    ['intensity', 'mz']
    """

    #: Smallest :meth:`predict_batch` call that is featurized by the workers (smaller ones do not repay their start).
    min_molecules_for_workers = 2048

    def __init__(self, model: str | os.PathLike | LoadedModel | None = None, device: str = "cpu",
                 batch_size: int = 256, uncertainty_samples: int = 0, backend: str = "torch", threads: int = 0,
                 featurize_workers: int = 0):
        _check_batch_size(batch_size)
        if isinstance(model, LoadedModel):
            self.loaded = model
            self.model_path = None
        else:
            self.model_path = Path(model) if model is not None else bundled_model_path()
            self.loaded = load_model(self.model_path, device=device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.uncertainty_samples = uncertainty_samples
        if featurize_workers < 0:
            raise ValueError(f"featurize_workers must be 0 or more, got {featurize_workers}")
        self.featurize_workers = featurize_workers
        self._pool: FeaturizerPool | None = None
        self.last_errors: list[RecordProblem] = []
        if uncertainty_samples and not self.supports_uncertainty:
            raise ValueError(f"model {self.model_name} ({self.loaded.model_class}) has no MC-dropout uncertainty")
        self.inference_backend = make_backend(backend, self.loaded, threads)

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        """The name of the inference backend (one of :data:`~matchms_neims.backends.BACKENDS`)."""
        return self.inference_backend.name

    def to(self, device: str | torch.device) -> NeimsPredictor:
        """Run the model on ``device`` from now on (sharded prediction: the device of each process)."""
        self.device = torch.device(device)
        self.loaded.model.to(self.device)
        return self

    @property
    def featurizer(self):
        return self.loaded.featurizer

    @property
    def max_mz(self) -> int:
        return self.loaded.featurizer.max_mz

    @property
    def model_name(self) -> str:
        return str(self.loaded.metadata.get("name") or self.loaded.model_class)

    @property
    def model_version(self) -> str:
        return str(self.loaded.metadata.get("version") or "")

    @property
    def supports_uncertainty(self) -> bool:
        """Whether the model can estimate its uncertainty (MC dropout)."""
        return self.loaded.model.supports_uncertainty

    @property
    def supports_expert_weights(self) -> bool:
        """Whether the model is a mixture of experts whose ``forward_with_details`` gives ``expert_weights``."""
        return self.loaded.model.has_expert_weights

    # ------------------------------------------------------------------ core
    def featurize(self, molecules: Sequence[MoleculeInput]) -> tuple[list[int], list[FeaturizedMolecule],
                                                                     list[RecordProblem]]:
        """Featurize molecules in this process; returns positions and features of the good ones and the problems
        of the others."""
        return featurize_chunk(self.featurizer, molecules)

    def _batch_size(self, batch_size: int | None) -> int:
        """``batch_size`` checked, or the predictor's when ``None``."""
        return self.batch_size if batch_size is None else _check_batch_size(batch_size)

    def _featurized_chunks(self, molecules: Sequence[MoleculeInput], batch_size: int) -> Iterator[FeaturizedChunk]:
        """:meth:`featurize` of consecutive chunks of ``batch_size`` molecules, positions counted from the start.

        With ``featurize_workers`` the chunks are handed to the worker processes at once (when this is
        called), and they featurize ahead of the caller.
        """
        chunks = [molecules[start : start + batch_size] for start in range(0, len(molecules), batch_size)]
        if self.featurize_workers and len(chunks) > 1 and len(molecules) >= self.min_molecules_for_workers:
            featurized_chunks = self._featurizer_pool().imap(chunks)
        else:
            featurized_chunks = (featurize_chunk(self.featurizer, chunk) for chunk in chunks)
        starts = range(0, len(molecules), batch_size)
        return (([start + position for position in positions], featurized, errors)
                for start, (positions, featurized, errors) in zip(starts, featurized_chunks))

    def _featurizer_pool(self) -> FeaturizerPool:
        if self._pool is None:
            self._pool = FeaturizerPool(self.featurizer, self.featurize_workers)
            self._pool_finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def start_featurize_workers(self) -> None:
        """Start the ``featurize_workers`` now and wait until they are ready (else they start on first use)."""
        if self.featurize_workers:
            self._featurizer_pool().wait_until_ready()

    def close(self) -> None:
        """Stop the featurisation workers, if any were started (they also stop when the predictor is collected)."""
        if self._pool is not None:
            self._pool_finalizer()
            self._pool = None

    def __enter__(self) -> NeimsPredictor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _model_inputs(self, chunk: Sequence[FeaturizedMolecule]) -> tuple[tuple, torch.Tensor]:
        inputs = tuple(x.to(self.device) for x in self.featurizer.collate([item.features for item in chunk]))
        masses = torch.tensor([item.info.nominal_mass for item in chunk], device=self.device)
        return inputs, masses

    def _run_in_chunks(self, featurized: Sequence[FeaturizedMolecule], run: Callable[..., tuple[torch.Tensor, ...]],
                       widths: Sequence[int], batch_size: int | None) -> tuple[np.ndarray, ...]:
        """``run(inputs, masses, chunk_index)`` over chunks of ``batch_size`` molecules, each output concatenated.

        ``widths`` gives the number of columns of each output, used to shape the outputs of an empty input.
        """
        if not featurized:
            return tuple(np.zeros((0, width), dtype=np.float32) for width in widths)
        outputs: list[list[np.ndarray]] = [[] for _ in widths]
        batch_size = self._batch_size(batch_size)
        for index, start in enumerate(range(0, len(featurized), batch_size)):
            inputs, masses = self._model_inputs(featurized[start : start + batch_size])
            for parts, tensor in zip(outputs, run(inputs, masses, index)):
                parts.append(tensor.float().cpu().numpy())
        return tuple(np.concatenate(parts) for parts in outputs)

    @torch.inference_mode()
    def predict_features(self, featurized: Sequence[FeaturizedMolecule], batch_size: int | None = None) -> np.ndarray:
        """Run the model on featurized molecules, ``batch_size`` at a time (default: the predictor's); returns
        spectrum vectors with base peak 1."""
        (sqrt_intensity,) = self._run_in_chunks(
            featurized, lambda inputs, masses, _: self.inference_backend.run(inputs, masses)[:1], [self.max_mz + 1],
            batch_size)
        return _to_intensities(sqrt_intensity)

    @torch.inference_mode()
    def predict_features_with_expert_weights(self, featurized: Sequence[FeaturizedMolecule],
                                             batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mixture-of-experts prediction: spectrum vectors (base peak 1) and the mixing weights of the experts."""
        if not self.supports_expert_weights:
            raise ValueError(f"model {self.model_name} ({self.loaded.model_class}) is not a mixture of experts")

        widths = [self.max_mz + 1, self.loaded.model.n_experts]
        sqrt_intensity, weights = self._run_in_chunks(
            featurized, lambda inputs, masses, _: self.inference_backend.run(inputs, masses), widths, batch_size)
        return _to_intensities(sqrt_intensity), weights

    @torch.inference_mode()
    def predict_features_with_uncertainty(self, featurized: Sequence[FeaturizedMolecule], n_samples: int = 30,
                                          seed: int = 0, batch_size: int | None = None
                                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MC-dropout prediction: spectrum vectors (base peak 1) of the sample mean, and the sqrt-space mean and std.

        The same ``seed`` gives the same result for the same molecules and batch size.
        """
        if not self.supports_uncertainty:
            raise ValueError(f"model {self.model_name} ({self.loaded.model_class}) has no MC-dropout uncertainty")

        def run(inputs, masses, index):
            return self.loaded.model.predict_with_uncertainty(*inputs, masses, n_samples=n_samples, seed=seed + index)

        sqrt_mean, sqrt_std = self._run_in_chunks(featurized, run, [self.max_mz + 1] * 2, batch_size)
        return _to_intensities(sqrt_mean), sqrt_mean, sqrt_std

    @torch.inference_mode()
    def distillation_embeddings(self, featurized: Sequence[FeaturizedMolecule], batch_size: int | None = None
                                ) -> np.ndarray | None:
        """The model's molecule embedding per featurized molecule, ``(n, size)`` float32, that a distilled student's
        feature loss imitates (:meth:`~matchms_neims.models.capabilities.SpectrumModel.distillation_embedding`);
        ``None`` for models without one (``distillation_embedding_size`` 0)."""
        size = self.loaded.model.distillation_embedding_size
        if not size:
            return None
        (embedding,) = self._run_in_chunks(
            featurized, lambda inputs, masses, _: (self.loaded.model.distillation_embedding(*inputs, masses),),
            [size], batch_size)
        return embedding

    def predict_batch(self, items: Iterable, uncertainty_samples: int | None = None, batch_size: int | None = None
                      ) -> PredictionBatch:
        """Predict many molecules; bad records are skipped and returned as errors, never fatal.

        ``uncertainty_samples`` overrides the predictor's setting for this call (0: deterministic). The
        molecules are featurized and predicted in chunks of ``batch_size`` (default: the predictor's); with
        ``featurize_workers`` the featurisation of the next chunks overlaps the model's work on the current one.
        """
        batch_size = self._batch_size(batch_size)
        molecules = [as_molecule_input(item, i) for i, item in enumerate(items)]
        return self._predict_featurized(molecules, self._featurized_chunks(molecules, batch_size), uncertainty_samples,
                                        batch_size)

    def predict_batches(self, batches: Iterable[Iterable], uncertainty_samples: int | None = None,
                        batch_size: int | None = None) -> Iterator[PredictionBatch]:
        """:meth:`predict_batch` of each batch, in order, for a stream of batches (e.g. the chunks of a file).

        With ``featurize_workers`` the next batch is handed to the workers before this one is yielded, so
        they featurize while the caller handles (writes) the current one. The results are those of
        :meth:`predict_batch` called on each batch.
        """
        batch_size = self._batch_size(batch_size)
        pending: deque = deque()
        batches = iter(batches)

        def start_next() -> None:
            items = next(batches, None)
            if items is not None:
                molecules = [as_molecule_input(item, i) for i, item in enumerate(items)]
                pending.append((molecules, self._featurized_chunks(molecules, batch_size)))

        start_next()
        while pending:
            if self.featurize_workers:
                start_next()  # one batch ahead
            molecules, featurized_chunks = pending.popleft()
            yield self._predict_featurized(molecules, featurized_chunks, uncertainty_samples, batch_size)
            if not self.featurize_workers:
                start_next()

    def _predict_featurized(self, molecules: list[MoleculeInput], featurized_chunks: Iterable[FeaturizedChunk],
                            uncertainty_samples: int | None, batch_size: int) -> PredictionBatch:
        """Run the model over the featurized chunks of ``molecules`` and gather the :class:`PredictionBatch`."""
        n_samples = self.uncertainty_samples if uncertainty_samples is None else uncertainty_samples
        if n_samples and not self.supports_uncertainty:
            raise ValueError(f"model {self.model_name} ({self.loaded.model_class}) has no MC-dropout uncertainty")
        positions: list[int] = []
        infos: list[MoleculeInfo] = []
        errors: list[RecordProblem] = []
        problems = ProblemLog("molecules that cannot be predicted", collected=errors, log=logger)
        outputs: dict[str, list[np.ndarray]] = {}
        for index, (chunk_positions, featurized, chunk_errors) in enumerate(featurized_chunks):
            for problem in chunk_errors:
                problems.report(problem)
            if not featurized:
                continue
            positions.extend(chunk_positions)
            infos.extend(item.info for item in featurized)
            for name, values in self._predict_chunk(featurized, n_samples, index, batch_size).items():
                outputs.setdefault(name, []).append(values)
        problems.close()
        if not positions:  # shapes of an empty result, as the models give them
            outputs = {name: [values] for name, values in self._predict_chunk([], n_samples, 0, batch_size).items()}
        joined = {name: np.concatenate(parts) for name, parts in outputs.items()}
        uncertainty = uncertainty_score(joined["sqrt_mean"], joined["sqrt_std"]) if n_samples else None
        return PredictionBatch(joined["vectors"], [molecules[i] for i in positions], infos, errors, uncertainty,
                               joined.get("sqrt_mean"), joined.get("sqrt_std"), joined.get("expert_weights"))

    def _predict_chunk(self, featurized: Sequence[FeaturizedMolecule], n_samples: int, index: int, batch_size: int
                       ) -> dict[str, np.ndarray]:
        """The outputs of :meth:`predict_batch` for one chunk (the ``index``-th; it seeds MC dropout)."""
        if n_samples:
            vectors, sqrt_mean, sqrt_std = self.predict_features_with_uncertainty(featurized, n_samples, seed=index,
                                                                                  batch_size=batch_size)
            return {"vectors": vectors, "sqrt_mean": sqrt_mean, "sqrt_std": sqrt_std}
        if self.supports_expert_weights:
            vectors, expert_weights = self.predict_features_with_expert_weights(featurized, batch_size)
            return {"vectors": vectors, "expert_weights": expert_weights}
        return {"vectors": self.predict_features(featurized, batch_size)}

    # ------------------------------------------------------------------ public API
    def predict(self, smiles: str, min_relative_intensity: float = 0.001) -> dict[str, np.ndarray]:
        """Predict one spectrum.

        Returns
        -------
        dict
            ``{"mz": ..., "intensity": ...}``: nominal m/z values and intensities relative to the
            base peak (1.0), peaks below ``min_relative_intensity`` dropped; for mixture-of-experts
            models (the student) also ``"expert_weights"``, the mixing weight of each expert.

        Raises
        ------
        MoleculeError
            When the SMILES cannot be predicted (the message says why).
        """
        _, featurized, errors = self.featurize([MoleculeInput(smiles, "", smiles)])
        if errors:
            raise MoleculeError(errors[0].record, errors[0].reason)
        if self.supports_expert_weights:
            vectors, expert_weights = self.predict_features_with_expert_weights(featurized)
            extra = {"expert_weights": expert_weights[0]}
        else:
            vectors, extra = self.predict_features(featurized), {}
        mz, intensity = vector_to_peaks(vectors[0], min_relative_intensity)
        return {"mz": mz, "intensity": intensity, **extra}

    def spectrum_metadata(self, molecule: MoleculeInput, info: MoleculeInfo, uncertainty: float | None = None,
                          expert_weights: Sequence[float] | None = None) -> dict:
        """Metadata written into every predicted spectrum of this model: :func:`predicted_spectrum_metadata` with the
        model's name, version and formula-head fallback."""
        return predicted_spectrum_metadata(molecule, info, self.model_name, self.model_version, uncertainty,
                                           expert_weights, self.formula_head_fallback(info))

    def formula_head_fallback(self, info: MoleculeInfo) -> str | None:
        """Why the model's formula head rendered this molecule without subformulae (``None``: it did not, or the
        model has no formula head); see :class:`~matchms_neims.models.formula_head.FormulaHead`."""
        head = self.loaded.model.formula_head
        if head is None:
            return None
        return head.fallback_reason(formula_counts(parse_smiles(info.smiles)))

    def predict_spectra(self, smiles_or_records: Iterable, batch_size: int | None = None,
                        min_relative_intensity: float = 0.001, on_error: str = "skip") -> list[Spectrum]:
        """Predict matchms spectra for many molecules.

        Parameters
        ----------
        smiles_or_records
            SMILES strings, ``(smiles, name)`` pairs, dicts with ``smiles`` (and ``compound_name``),
            or matchms spectra carrying ``smiles`` metadata; a single SMILES string or spectrum is one molecule.
            Items that are not molecules (``None``, NaN, numbers) are skipped and listed in :attr:`last_errors`.
        batch_size
            Molecules per forward pass (default: the predictor's).
        min_relative_intensity
            Drop predicted peaks below this fraction of the base peak.
        on_error
            ``"skip"`` (default): log and skip molecules that cannot be predicted; the errors are kept
            in :attr:`last_errors`. ``"raise"``: raise the first error.

        Returns
        -------
        list of matchms.Spectrum
            One per predictable molecule, in input order, with metadata ``smiles``, ``inchikey``,
            ``formula``, ``nominal_mass``, ``compound_name``, ``predicted=True``, ``model_name`` and
            ``model_version``; ``prediction_uncertainty`` for MC-dropout predictions and ``expert_weights``
            for mixture-of-experts models.
        """
        if on_error not in ("skip", "raise"):
            raise ValueError("on_error must be 'skip' or 'raise'")
        batch_size = self._batch_size(batch_size)
        if isinstance(smiles_or_records, (str, bytes, Spectrum)):  # one molecule, not an iterable of characters
            smiles_or_records = [smiles_or_records]
        batch = self.predict_batch(smiles_or_records, batch_size=batch_size)
        self.last_errors = batch.errors
        if batch.errors and on_error == "raise":
            raise MoleculeError(batch.errors[0].record, batch.errors[0].reason)
        spectra = []
        for vector, molecule, info, uncertainty, expert_weights in zip(
                batch.vectors, batch.molecules, batch.infos, batch.per_molecule(batch.uncertainty),
                batch.per_molecule(batch.expert_weights)):
            mz, intensity = vector_to_peaks(vector, min_relative_intensity)
            metadata = self.spectrum_metadata(molecule, info, uncertainty, expert_weights)
            spectra.append(Spectrum(mz=mz, intensities=intensity, metadata=metadata, metadata_harmonization=False))
        return spectra
