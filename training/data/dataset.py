"""The lazy dataset of the cache (metadata in RAM, spectra read per item, features on the fly) and its collator."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from matchms_neims.chemistry import parse_smiles
from matchms_neims.featurize import Featurizer, compact_features, expand_features
from matchms_neims_training.data.cache import CacheMetadata


class LazyMassSpecDataset(Dataset):
    """Training samples from the HDF5 cache: metadata in RAM, spectra read from disk per item.

    Each item is a dict with ``features`` (model input), ``target`` (binned spectrum, base peak 1),
    ``nominal_mass``, ``index`` (row in the cache) and ``molecule`` (an integer shared by the rows of one
    molecule). Features are computed on the fly and
    memoised per molecule (fingerprints as their non-zero entries, see :func:`compact_features`; graphs as
    they are).

    Parameters
    ----------
    augmenter
        Optional :class:`matchms_neims_training.data.augment.SpectrumAugmenter` (13C labelling, LDS) applied per item;
        give it to the training split only.
    soft_labels
        Optional :class:`matchms_neims_training.distillation.soft_labels.SoftLabels`; items then also hold
        ``teacher_mean``, ``teacher_std``, ``teacher_embedding`` and ``has_teacher`` (0 for rows without a label and for
        13C-labelled samples, whose teacher label would be of the unlabelled molecule).
    memoize_features
        Keep each molecule's features after their first use (default); ``False`` featurises on every
        read, so that only the metadata stays in RAM.
    """

    def __init__(self, cache_path: str | os.PathLike, split: str | None, featurizer: Featurizer,
                 metadata: CacheMetadata | None = None, augmenter=None, soft_labels=None,
                 memoize_features: bool = True):
        self.cache_path = Path(cache_path)
        self.metadata = metadata or CacheMetadata(cache_path)
        self.indices = self.metadata.indices(split)
        self.featurizer = featurizer
        self.augmenter = augmenter if augmenter is not None and augmenter.active else None
        self.soft_labels = soft_labels
        self._handle: h5py.File | None = None
        self._feature_cache: dict[str, np.ndarray] = {}
        self.memoize_features = memoize_features
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None  # each DataLoader worker opens its own handle
        return state

    def _spectra(self) -> h5py.Dataset:
        if self._handle is None:
            self._handle = h5py.File(self.cache_path, "r")
        return self._handle["spectra"]

    def features(self, smiles: str):
        cached = self._feature_cache.get(smiles)
        if cached is None:
            cached = compact_features(self.featurizer.features_of_mol(parse_smiles(smiles)))
            if self.memoize_features:
                self._feature_cache[smiles] = cached
        return torch.from_numpy(expand_features(cached, self.featurizer.size)) if isinstance(cached, np.ndarray) \
            else cached

    def _random(self) -> np.random.Generator:
        # One stream per DataLoader worker and epoch, seeded from torch: Lightning seeds the workers and
        # matchms_neims_training.running.callbacks.EpochSeed reseeds torch at every epoch start, so a resumed run draws
        # the same.
        seed = torch.initial_seed()
        if self._rng is None or self._rng_seed != seed:
            self._rng, self._rng_seed = np.random.default_rng(seed % 2**32), seed
        return self._rng

    def __getitem__(self, item: int) -> dict:
        row = int(self.indices[item])
        smiles = self.metadata.columns["smiles"][row]
        target = np.asarray(self._spectra()[row], dtype=np.float32)
        mass = int(self.metadata.nominal_mass[row])
        features = None
        if self.augmenter is not None:
            labelled = self.augmenter.label(smiles, target, self._random())
            if labelled is not None:
                mol, target, mass = labelled
                features = self.featurizer.features_of_mol(mol)
            target = self.augmenter.smooth(target)
        relabelled = features is not None
        if features is None:
            features = self.features(smiles)
        elif isinstance(features, np.ndarray):
            features = torch.from_numpy(features.astype(np.float32))
        item = {
            "features": features,
            "target": torch.from_numpy(np.asarray(target, dtype=np.float32)),
            "nominal_mass": torch.tensor(mass),
            "index": torch.tensor(row),
            "molecule": torch.tensor(int(self.metadata.molecule_id[row])),
        }
        if self.soft_labels is not None:
            label = None if relabelled else self.soft_labels.get(row)
            item.update(teacher_item(label, len(target), self.soft_labels.embedding_size))
            item["has_target"] = torch.tensor(1.0)
        return item


def teacher_item(label: tuple | None, n_bins: int, embedding_size: int) -> dict:
    """The ``teacher_*`` and ``has_teacher`` entries of a training item from a (mean, std, embedding) label.

    ``None`` (no label) gives zeros and ``has_teacher`` 0, so that the item drops out of the distillation losses.
    """
    if label is None:
        return {"teacher_mean": torch.zeros(n_bins), "teacher_std": torch.zeros(n_bins),
                "teacher_embedding": torch.zeros(embedding_size), "has_teacher": torch.tensor(0.0)}
    mean, std, embedding = (torch.from_numpy(np.asarray(value, dtype=np.float32)) for value in label)
    return {"teacher_mean": mean, "teacher_std": std, "teacher_embedding": embedding,
            "has_teacher": torch.tensor(1.0)}


class SampleCollator:
    """Collate dataset items into a batch dict whose ``inputs`` tuple feeds the model (graphs batched by PyG)."""

    def __init__(self, feature_kind: str):
        self.feature_kind = feature_kind

    def __call__(self, items: list[dict]) -> dict:
        from matchms_neims.featurize import collate_features

        features = [item["features"] for item in items]
        if isinstance(features[0], torch.Tensor):
            inputs = (torch.stack(features),)
        else:
            inputs = collate_features(self.feature_kind, features)
        return {"inputs": inputs,
                **{key: torch.stack([item[key] for item in items]) for key in items[0] if key != "features"}}


