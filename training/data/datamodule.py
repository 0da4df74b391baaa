"""Seeded samplers (shuffled, mass-grouped batches) and the Lightning DataModule of the cache."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from matchms_neims.featurize import Featurizer
from matchms_neims_training.config import DataConfig
from matchms_neims_training.data.cache import CacheMetadata, build_cache
from matchms_neims_training.data.dataset import LazyMassSpecDataset, SampleCollator
from matchms_neims_training.data.splits import SPLITS


class EpochSeededSampler(torch.utils.data.Sampler[int]):
    """A random order of ``n`` items that depends only on ``seed`` and the epoch (Lightning calls :meth:`set_epoch`).

    The DataLoader's default shuffling draws from torch's global random state, which a resumed run does not
    have; this order is the same for epoch ``e`` whether the run was interrupted or not.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class MassGroupedSampler(EpochSeededSampler):
    """An order of the items in which each run of ``batch_size`` items holds molecules of similar nominal mass.

    Per epoch, the masses are jittered by a uniform ``+-jitter`` Da, sorted and cut into batches, and the batches
    are shuffled (the last, shorter one stays last, so that every batch the DataLoader cuts is one group). Under
    the in-batch retrieval loss the other molecules of a batch are then the look-alikes a library search has to
    tell apart (same mass range), not easy negatives of another size. Depends only on ``seed`` and the epoch.
    One process only: under DDP, Lightning puts its DistributedSampler (random batches) in place of this one.

    Parameters
    ----------
    nominal_masses
        Nominal mass of each item, in item order.
    batch_size
        The DataLoader's batch size.
    jitter
        Half-width (Da) of the uniform noise added to the masses before sorting; 0 gives the same groups
        every epoch.
    """

    def __init__(self, nominal_masses: np.ndarray, batch_size: int, seed: int = 0, jitter: float = 5.0):
        super().__init__(len(nominal_masses), seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.nominal_masses = np.asarray(nominal_masses, dtype=np.float64)
        self.batch_size = batch_size
        self.jitter = float(jitter)

    def __iter__(self):
        rng = np.random.default_rng(self.seed * 100_003 + self.epoch)
        keys = self.nominal_masses + rng.uniform(-self.jitter, self.jitter, self.n)
        order = np.argsort(keys, kind="stable")
        n_full = self.n // self.batch_size
        batches = order[:n_full * self.batch_size].reshape(n_full, self.batch_size)
        batches = batches[rng.permutation(n_full)]
        return iter(np.concatenate([batches.reshape(-1), order[n_full * self.batch_size:]]).tolist())


BATCH_GROUPINGS = ("random", "mass")


class SpectraDataModule(L.LightningDataModule):
    """Lightning DataModule over the cache (train/val/test splits by molecule)."""

    def __init__(self, config: DataConfig, featurizer: Featurizer, augmenter=None, soft_labels=None,
                 transfer: Dataset | None = None):
        super().__init__()
        self.config = config
        self.featurizer = featurizer
        self.augmenter = augmenter
        self.soft_labels = soft_labels  # training split only
        self.transfer = transfer  # molecules with teacher labels only, appended to the training split
        self.datasets: dict[str, LazyMassSpecDataset] = {}
        self.metadata: CacheMetadata | None = None

    def prepare_data(self) -> None:
        build_cache(self.config)

    def setup(self, stage: str | None = None) -> None:
        cache = build_cache(self.config, progress=False) if not Path(self.config.cache).is_file() else self.config.cache
        self.metadata = metadata = CacheMetadata(cache)
        for split in SPLITS:
            train = split == "train"
            self.datasets[split] = LazyMassSpecDataset(cache, split, self.featurizer, metadata,
                                                       self.augmenter if train else None,
                                                       self.soft_labels if train else None,
                                                       self.config.memoize_features)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        if split == "train" and self.transfer is not None:
            dataset = ConcatDataset([dataset, self.transfer])
        # shuffled by (seed, epoch), so a resumed run sees the same order; Lightning swaps in a
        # DistributedSampler (also seeded per epoch) under DDP
        sampler = self._train_sampler(dataset) if shuffle else None
        # its own generator: creating an iterator then draws no number from torch's global stream (dropout's)
        return DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.config.split_seed),
                          num_workers=self.config.num_workers, persistent_workers=self.config.num_workers > 0,
                          collate_fn=SampleCollator(self.featurizer.kind))

    def _train_sampler(self, dataset: Dataset) -> EpochSeededSampler:
        grouping = self.config.batch_grouping
        if grouping not in BATCH_GROUPINGS:
            raise ValueError(f"unknown data.batch_grouping {grouping!r}; expected one of {BATCH_GROUPINGS}")
        if grouping == "random":
            return EpochSeededSampler(len(dataset), self.config.split_seed)
        if not isinstance(dataset, LazyMassSpecDataset):
            raise ValueError("data.batch_grouping 'mass' needs the spectra of the cache alone (no transfer set)")
        masses = dataset.metadata.nominal_mass[dataset.indices]
        return MassGroupedSampler(masses, self.config.batch_size, self.config.split_seed,
                                  self.config.batch_mass_jitter)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
