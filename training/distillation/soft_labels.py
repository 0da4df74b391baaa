"""Teacher soft labels for distillation: MC-dropout mean/std spectra and ECFP embeddings, computed once into HDF5.

The file sits next to the spectra cache and is named after the teacher model file's SHA-256, so a new
teacher gets new labels; its attributes also record the spectra cache's fingerprint and the number of
MC samples, and a label file that does not match them is rebuilt (atomically).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from matchms_neims.checkpoint import load_model
from matchms_neims.chemistry import QUOTED_SMILES_LENGTH, shortened
from matchms_neims.io import MoleculeInput
from matchms_neims.predictor import NeimsPredictor
from matchms_neims.spectra import normalize_base_peak
from matchms_neims.utils import atomic_path, file_sha256
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.cache import CacheMetadata, build_cache

logger = logging.getLogger(__name__)

LABEL_FORMAT = 1


def soft_label_path(config: TrainConfig, teacher_sha256: str) -> Path:
    """``distill.soft_labels`` or ``<cache stem>.teacher-<sha12>.h5`` beside ``data.cache``."""
    if config.distill.soft_labels:
        return Path(config.distill.soft_labels)
    cache = Path(config.data.cache)
    return cache.with_name(f"{cache.stem}.teacher-{teacher_sha256[:12]}.h5")


def labels_are_current(path: Path, expected: dict) -> bool:
    """Whether ``path`` is a readable label file whose attributes hold the ``expected`` values."""
    try:
        with h5py.File(path, "r") as handle:
            return all(handle.attrs.get(key) == value for key, value in expected.items())
    except OSError:
        return False


def load_teacher(path: str | os.PathLike, max_mz: int):
    """Load a teacher model file and check it has MC-dropout uncertainty and predicts m/z 0..``max_mz``."""
    loaded = load_model(path)
    if not loaded.model.supports_uncertainty:
        raise ValueError(f"{path} ({loaded.model_class}) has no MC-dropout uncertainty; it cannot be a teacher")
    if loaded.model.max_mz != max_mz:
        raise ValueError(f"teacher predicts m/z 0..{loaded.model.max_mz}, the data has 0..{max_mz}")
    return loaded


def teacher_labels(loaded, smiles_list: list[str], mc_samples: int, seed: int, batch_size: int = 128,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The teacher's MC-dropout mean and std (sqrt intensities, base peak 1) and embedding per structure.

    Parameters
    ----------
    loaded
        The teacher (:func:`load_teacher`).
    smiles_list
        Structures to label; one that cannot be featurised is logged and gets ``valid`` False.
    mc_samples, seed
        MC-dropout samples per structure; batch ``start`` is sampled with seed ``seed + start``.

    Returns
    -------
    mean, std, embedding, valid
        ``(n, max_mz + 1)`` float32 mean scaled to base peak 1 and std scaled alike, ``(n, embedding)``
        float32 embedding (:meth:`~matchms_neims.models.capabilities.SpectrumModel.distillation_embedding`; 0
        columns for teachers without one) and the ``(n,)`` bool mask of labelled structures.
    """
    predictor = NeimsPredictor(loaded, batch_size=batch_size)
    mean = np.zeros((len(smiles_list), loaded.model.max_mz + 1), dtype=np.float32)
    std = np.zeros_like(mean)
    embedding: np.ndarray | None = None
    valid = np.zeros(len(smiles_list), dtype=bool)
    with tqdm(total=len(smiles_list), desc="teacher soft labels", unit="molecules", disable=not progress) as bar:
        for start in range(0, len(smiles_list), batch_size):
            chunk = [MoleculeInput(smiles, "", shortened(smiles, QUOTED_SMILES_LENGTH))
                     for smiles in smiles_list[start : start + batch_size]]
            positions, featurized, problems = predictor.featurize(chunk)
            for problem in problems:  # reported and skipped, the batch goes on
                logger.warning("no teacher label for %s", problem)
            if featurized:
                kept = [start + position for position in positions]
                # one chunk per batch, sampled with seed + start: the predictor's MC-dropout path
                _, mc_mean, mc_std = predictor.predict_features_with_uncertainty(
                    featurized, mc_samples, seed=seed + start, batch_size=len(featurized))
                features = predictor.distillation_embeddings(featurized, batch_size=len(featurized))
                if features is None:  # a teacher without an embedding (baseline MLPs): no feature loss
                    features = np.zeros((len(kept), 0), dtype=np.float32)
                mc_mean = np.clip(mc_mean, 0, None)
                scale = 1.0 / np.maximum(mc_mean.max(axis=1, keepdims=True), 1e-12)
                if embedding is None:
                    embedding = np.zeros((len(smiles_list), features.shape[1]), dtype=np.float32)
                mean[kept] = normalize_base_peak(mc_mean)
                std[kept] = mc_std * scale
                embedding[kept] = features
                valid[kept] = True
            bar.update(len(chunk))
    if embedding is None:
        raise ValueError("the teacher could not label any of the molecules")
    return mean, std, embedding, valid


def build_soft_labels(config: TrainConfig, split: str = "train", batch_size: int = 128, progress: bool = True,
                      force: bool = False) -> Path:
    """Compute (or reuse) the teacher's soft labels for every spectrum row of ``split``.

    Each unique structure is predicted once with ``distill.mc_samples`` MC-dropout samples (seeded);
    the MC mean is scaled to base peak 1 in sqrt-intensity space and the std by the same factor.

    Returns
    -------
    Path
        HDF5 file with ``rows`` (cache rows), ``mean`` and ``std`` (``(n, max_mz + 1)``, sqrt
        intensities) and ``embedding`` (the teacher's ``ecfp_embedding``), all float32.
    """
    teacher_path = Path(config.distill.teacher)
    if not teacher_path.is_file():
        raise FileNotFoundError(f"distill.teacher {teacher_path} does not exist; train the teacher first "
                                "(matchms-neims train teacher) or set distill.teacher: '' to train without it")
    cache = build_cache(config.data, progress=progress)
    with h5py.File(cache, "r") as handle:
        cache_fingerprint = str(handle.attrs["fingerprint"])
    teacher_sha = file_sha256(teacher_path)
    expected = {"format": LABEL_FORMAT, "teacher_sha256": teacher_sha, "cache_fingerprint": cache_fingerprint,
                "mc_samples": config.distill.mc_samples, "split": split, "seed": config.trainer.seed}
    path = soft_label_path(config, teacher_sha)
    if not force and labels_are_current(path, expected):
        logger.info("reusing teacher soft labels %s", path)
        return path

    loaded = load_teacher(teacher_path, config.data.max_mz)
    metadata = CacheMetadata(cache)
    rows = metadata.indices(split)
    structures: dict[str, list[int]] = {}
    for position, row in enumerate(rows):
        structures.setdefault(str(metadata.columns["smiles"][row]), []).append(position)
    smiles_list = list(structures)
    labels = teacher_labels(loaded, smiles_list, config.distill.mc_samples, config.trainer.seed, batch_size, progress)
    positions = np.concatenate([structures[smiles] for smiles in smiles_list])
    order = np.repeat(np.arange(len(smiles_list)), [len(structures[smiles]) for smiles in smiles_list])
    mean, std, embedding, valid = (np.empty((len(rows), *values.shape[1:]), dtype=values.dtype) for values in labels)
    for target, values in zip((mean, std, embedding, valid), labels):
        target[positions] = values[order]
    write_label_file(path, {"rows": rows.astype(np.int64), "valid": valid},
                     {"mean": mean, "std": std, "embedding": embedding}, {**expected, "teacher": str(teacher_path)})
    logger.info("teacher soft labels for %d rows (%d structures, %d skipped) written to %s", len(rows),
                len(smiles_list), int((~valid).sum()), path)
    return path


def write_label_file(path: Path, index: dict[str, np.ndarray], labels: dict[str, np.ndarray], attrs: dict) -> None:
    """Write a label file atomically.

    ``index`` datasets are written as they are (object arrays as UTF-8 strings), the 2-D ``labels``
    gzip-compressed in chunks of 64 rows (those without columns, such as the embedding of a teacher that has
    none, as they are), and ``attrs`` as file attributes.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name, values in index.items():
            string = values.dtype == object
            handle.create_dataset(name, data=values, dtype=h5py.string_dtype("utf-8") if string else None)
        for name, values in labels.items():
            if values.shape[1] == 0:
                handle.create_dataset(name, data=values)
                continue
            handle.create_dataset(name, data=values, compression="gzip",
                                  chunks=(min(64, max(len(values), 1)), values.shape[1]))
        for key, value in attrs.items():
            handle.attrs[key] = value


class LabelFile:
    """Random access to the teacher labels of a label file by position (opened lazily, so DataLoader workers can fork).

    Parameters
    ----------
    path
        File with ``mean``, ``std`` and ``embedding`` datasets (:func:`write_label_file`).
    lds_sigma
        Gaussian label distribution smoothing of the means (m/z; 0: off).
    """

    def __init__(self, path: str | os.PathLike, lds_sigma: float = 0.0):
        self.path = Path(path)
        self.lds_sigma = lds_sigma
        with h5py.File(self.path, "r") as handle:
            self.embedding_size = handle["embedding"].shape[1]
        self._handle: h5py.File | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None  # each DataLoader worker opens its own handle
        return state

    def at(self, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Teacher mean (LDS-smoothed if asked), std and embedding of the label at ``position``."""
        from matchms_neims_training.data.augment import smooth_spectra

        if self._handle is None:
            self._handle = h5py.File(self.path, "r")
        mean = self._handle["mean"][position]
        return (smooth_spectra(mean, self.lds_sigma), self._handle["std"][position],
                self._handle["embedding"][position])


class SoftLabels(LabelFile):
    """The soft labels of the training split by cache row (:func:`build_soft_labels`)."""

    def __init__(self, path: str | os.PathLike, lds_sigma: float = 0.0):
        super().__init__(path, lds_sigma)
        with h5py.File(self.path, "r") as handle:
            rows = handle["rows"][:]
            self.valid = handle["valid"][:]
        self.position = {int(row): i for i, row in enumerate(rows)}

    def get(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Teacher mean (LDS-smoothed if asked), std and embedding for a cache row, or ``None`` without a label."""
        position = self.position.get(int(row))
        if position is None or not self.valid[position]:
            return None
        return self.at(position)
