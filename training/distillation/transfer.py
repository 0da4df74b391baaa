"""The distillation transfer set: molecules without spectra that the student learns from the teacher alone.

The teacher's knowledge is not limited to the ~6,000 molecules with experimental spectra: it predicts
any molecule. ``distill.transfer_molecules`` (e.g. the NIST 17 molecule list) adds molecules labelled by
the teacher only (MC-dropout mean, std and embedding), trained on with the soft and feature losses; the
hard loss ignores them. Every molecule of the spectra cache is left out, by InChIKey first block: those of
the validation and test splits so that no held-out structure is seen, those of the training split
because they are labelled already.

The labels are computed once into ``<cache stem>.transfer-<sha12>.h5`` beside the spectra cache, named
after the teacher, the molecule files, the cache and the settings, and rebuilt when any of them changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from itertools import chain
from pathlib import Path

import h5py
import numpy as np
import torch
from rdkit import Chem
from torch.utils.data import Dataset

from matchms_neims.chemistry import MoleculeError, inchikey_block, parse_smiles
from matchms_neims.featurize import Featurizer, compact_features, expand_features
from matchms_neims.io import read_molecules
from matchms_neims.utils import file_sha256
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.cache import CacheMetadata, build_cache
from matchms_neims_training.data.dataset import teacher_item
from matchms_neims_training.distillation.soft_labels import (
    LABEL_FORMAT,
    LabelFile,
    SoftLabels,
    build_soft_labels,
    labels_are_current,
    load_teacher,
    teacher_labels,
    write_label_file,
)

logger = logging.getLogger(__name__)


def transfer_smiles(files: list[str], exclude_keys: set[str], max_molecules: int = 0) -> list[str]:
    """Canonical SMILES of the new molecules of ``files``, in file order, without duplicates.

    Parameters
    ----------
    files
        Molecule files (see :func:`matchms_neims.library.read_molecules`).
    exclude_keys
        InChIKey first blocks to leave out (the molecules of the spectra cache).
    max_molecules
        Stop after this many molecules (0: all).
    """
    smiles, seen = [], set(exclude_keys)
    skipped = {"unreadable": 0, "known": 0}
    for molecule in chain.from_iterable(read_molecules(file) for file in files):
        if max_molecules and len(smiles) >= max_molecules:
            break
        try:
            mol = parse_smiles(molecule.smiles, molecule.record)
            key = inchikey_block(Chem.MolToInchiKey(mol))
        except (MoleculeError, ValueError) as error:
            logger.debug("transfer set: %s", error)
            skipped["unreadable"] += 1
            continue
        if not key or key in seen:
            skipped["known"] += 1
            continue
        seen.add(key)
        smiles.append(Chem.MolToSmiles(mol))
    logger.info("transfer set: %d new molecules from %s (%d unreadable, %d in the spectra cache or repeated)",
                len(smiles), ", ".join(files), skipped["unreadable"], skipped["known"])
    return smiles


def build_transfer_labels(config: TrainConfig, batch_size: int = 128, progress: bool = True,
                          force: bool = False) -> Path | None:
    """Compute (or reuse) the teacher's labels for the transfer molecules; ``None`` when there are none.

    Returns
    -------
    Path or None
        HDF5 file with ``smiles`` (utf-8), ``mean`` and ``std`` (``(n, max_mz + 1)``, sqrt intensities,
        base peak 1) and ``embedding`` of the labelled molecules only.
    """
    distill = config.distill
    files = [str(file) for file in distill.transfer_molecules if file]
    if not files:
        return None
    teacher_path = Path(distill.teacher)
    for file in (teacher_path, *map(Path, files)):
        if not file.is_file():
            raise FileNotFoundError(f"distillation transfer set: {file} does not exist")
    cache = build_cache(config.data, progress=progress)
    with h5py.File(cache, "r") as handle:
        cache_fingerprint = str(handle.attrs["fingerprint"])
    expected = {"format": LABEL_FORMAT, "teacher_sha256": file_sha256(teacher_path),
                "molecule_files_sha256": ",".join(file_sha256(file) for file in files),
                "cache_fingerprint": cache_fingerprint, "mc_samples": distill.transfer_mc_samples,
                "max_molecules": distill.max_transfer_molecules, "seed": config.trainer.seed}
    digest = hashlib.sha256(repr(sorted(expected.items())).encode()).hexdigest()
    cache_path = Path(config.data.cache)
    path = cache_path.with_name(f"{cache_path.stem}.transfer-{digest[:12]}.h5")
    if not force and labels_are_current(path, expected):
        logger.info("reusing transfer-set labels %s", path)
        return path

    metadata = CacheMetadata(cache)
    smiles = transfer_smiles(files, set(map(str, metadata.columns["molecule_key"])), distill.max_transfer_molecules)
    if not smiles:
        raise ValueError(f"distillation transfer set: no new molecules in {', '.join(files)}")
    loaded = load_teacher(teacher_path, config.data.max_mz)
    mean, std, embedding, valid = teacher_labels(loaded, smiles, distill.transfer_mc_samples, config.trainer.seed,
                                                 batch_size, progress)
    keep = np.flatnonzero(valid)
    write_label_file(path, {"smiles": np.array([smiles[i] for i in keep], dtype=object)},
                     {"mean": mean[keep], "std": std[keep], "embedding": embedding[keep]}, expected)
    logger.info("transfer-set labels for %d molecules (%d skipped) written to %s", len(keep),
                len(smiles) - len(keep), path)
    return path


class TransferDataset(Dataset):
    """Transfer molecules as training items: student features, teacher labels, no experimental spectrum.

    Items have the keys of :class:`matchms_neims_training.data.dataset.LazyMassSpecDataset` items with soft labels, with
    an all-zero ``target``, ``index`` -1 and ``has_target`` 0 (the hard loss skips them). A molecule the student's
    featurizer rejects (e.g. M+ above ``max_mz``) is dropped when the dataset is built.

    Parameters
    ----------
    path
        File written by :func:`build_transfer_labels`.
    featurizer
        The student's featurizer.
    lds_sigma
        Gaussian label distribution smoothing of the teacher means (m/z; 0: off), as for the soft labels.
    """

    def __init__(self, path: str | os.PathLike, featurizer: Featurizer, lds_sigma: float = 0.0):
        self.labels = LabelFile(path, lds_sigma)
        with h5py.File(self.labels.path, "r") as handle:
            smiles = [value.decode() if isinstance(value, bytes) else str(value) for value in handle["smiles"][:]]
            self.n_bins = handle["mean"].shape[1]
        self.positions, features, masses = [], [], []
        for position, item in enumerate(smiles):
            try:
                featurized = featurizer(item, record=f"transfer molecule {position}")
            except MoleculeError as error:
                logger.debug("transfer set: %s", error)
                continue
            self.positions.append(position)
            features.append(compact_features(featurized.features))
            masses.append(featurized.info.nominal_mass)
        self._features = features
        self._feature_size = featurizer.size
        self._masses = np.asarray(masses, dtype=np.int64)
        if len(self.positions) < len(smiles):
            logger.info("transfer set: %d of %d molecules rejected by the student's featurizer",
                        len(smiles) - len(self.positions), len(smiles))

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, item: int) -> dict:
        return {
            "features": torch.from_numpy(expand_features(self._features[item], self._feature_size)),
            "target": torch.zeros(self.n_bins),
            "nominal_mass": torch.tensor(int(self._masses[item])),
            "index": torch.tensor(-1),
            "molecule": torch.tensor(-1 - item),  # not a cache molecule: an id of its own
            **teacher_item(self.labels.at(self.positions[item]), self.n_bins, self.labels.embedding_size),
            "has_target": torch.tensor(0.0),
        }


def uses_teacher(config: TrainConfig) -> bool:
    """Whether the config distils from a teacher (a teacher file and a soft or feature loss weight)."""
    distill = config.distill
    return bool(distill.teacher) and (distill.beta > 0 or distill.gamma > 0)


def distillation_targets(config: TrainConfig, featurizer: Featurizer, progress: bool = True
                         ) -> tuple[SoftLabels | None, TransferDataset | None]:
    """The teacher's labels of the training split and its transfer set, as the training data module takes them.

    Both are ``None`` when the config uses no teacher (:func:`uses_teacher`); the transfer set is ``None``
    without ``distill.transfer_molecules``. The label files are computed once and reused (see the module
    docstring). Serves every module that distils: the student and the baseline MLP.
    """
    if not uses_teacher(config):
        return None, None
    soft_labels = SoftLabels(build_soft_labels(config, progress=progress), config.distill.soft_lds_sigma)
    transfer_path = build_transfer_labels(config, progress=progress)
    if transfer_path is None:
        return soft_labels, None
    transfer = TransferDataset(transfer_path, featurizer, config.distill.soft_lds_sigma)
    logger.info("transfer set: %d molecules labelled by the teacher join the training split", len(transfer))
    return soft_labels, transfer
