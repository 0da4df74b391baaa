"""Predicted decoys as negatives in training: molecules without spectra whose predictions must not outscore the
right one.

A user's in-silico library holds the predictions of many molecules that were never measured (the NIST 17 list
here); an unknown is identified when its own molecule's prediction outscores them. The mean squared error
rewards a prediction close to its own spectrum and nothing else, and on scaffold-held-out molecules of 300 Da
and more the predicted decoys of similar mass outscored the right entry (docs/results.md, fourth round). A
:class:`DecoyBank` holds featurised molecules that are not in the training data, and draws, for the molecules of
a batch, decoys of similar nominal mass; :func:`training.losses.decoy_margin_loss` then asks each measured
spectrum to score its own prediction above the decoys' predictions by a margin.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from matchms_neims.chemistry import MoleculeError, describe, inchikey_block
from matchms_neims.featurize import Featurizer, compact_features, expand_features
from matchms_neims.io import MAX_LOGGED_PROBLEMS
from training.molecules import MoleculeFile

logger = logging.getLogger(__name__)


class DecoyBank:
    """Featurised decoy molecules (compact fingerprints, sorted by nominal mass) to draw by mass.

    Parameters
    ----------
    path
        A molecule file (``.smi``, ``.csv``/``.tsv`` or ``.sdf``; :class:`training.molecules.MoleculeFile`).
    featurizer
        The model's featurizer (fingerprint kinds only).
    exclude_keys
        InChIKey first blocks to leave out: every molecule of the training data, whatever its split, so that
        no measured molecule (training, validation or test) is ever pushed away as a decoy.
    """

    def __init__(self, path: str | os.PathLike, featurizer: Featurizer,
                 exclude_keys: set[str] | frozenset = frozenset()):
        if featurizer.kind not in ("neims_count_ecfp", "student_fingerprint"):
            raise ValueError(f"decoys need a fingerprint featurizer, not {featurizer.kind!r}")
        self.featurizer = featurizer
        molecules = MoleculeFile(path)
        features, masses, seen = [], [], set(exclude_keys)
        problems = excluded = repeated = 0
        for index in range(len(molecules)):
            try:
                mol = molecules.molecule(index)
                info = describe(mol)
                key = inchikey_block(info.inchikey)
                if key in seen:
                    if key in exclude_keys:
                        excluded += 1
                    else:
                        repeated += 1
                    continue
                if not 2 <= info.nominal_mass <= featurizer.max_mz:
                    raise MoleculeError(molecules.record_label(index),
                                        f"molecular ion m/z {info.nominal_mass} is outside 2..{featurizer.max_mz}")
                fingerprint = featurizer.features_of_mol(mol)
            except ValueError as error:  # MoleculeError included
                problems += 1
                if problems <= MAX_LOGGED_PROBLEMS:
                    logger.warning("decoy skipped: %s", error)
                continue
            seen.add(key)  # one decoy per molecule (stereoisomers and salts share the first block)
            features.append(compact_features(fingerprint))
            masses.append(info.nominal_mass)
        if not features:
            raise ValueError(f"{path}: no usable decoy molecules ({excluded} in the training data, {problems} skipped)")
        order = np.argsort(masses, kind="stable")
        self.features = [features[i] for i in order]
        self.nominal_mass = np.asarray(masses, dtype=np.int64)[order]
        logger.info("decoy bank %s: %d molecules (%d in the training data and %d repeats left out, %d skipped)",
                    path, len(self.features), excluded, repeated, problems)

    def __len__(self) -> int:
        return len(self.features)

    def draw(self, nominal_masses: torch.Tensor, window: float, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoy per given mass, uniformly among those within ``window`` Da (the nearest where none is).

        Returns
        -------
        tuple
            ``(features, nominal_mass)``: float32 model inputs ``(n, featurizer.size)`` and masses ``(n,)``.
        """
        wanted = nominal_masses.detach().cpu().numpy().astype(np.float64)
        low = np.searchsorted(self.nominal_mass, wanted - window, side="left")
        high = np.searchsorted(self.nominal_mass, wanted + window, side="right")
        empty = high <= low
        nearest = np.clip(np.searchsorted(self.nominal_mass, wanted), 0, len(self) - 1)
        low, high = np.where(empty, nearest, low), np.where(empty, nearest + 1, high)
        uniform = torch.rand(len(wanted), generator=generator).numpy()
        chosen = np.minimum(low + (uniform * (high - low)).astype(np.int64), high - 1)
        features = np.stack([expand_features(self.features[i], self.featurizer.size) for i in chosen])
        return torch.from_numpy(features), torch.from_numpy(self.nominal_mass[chosen])
