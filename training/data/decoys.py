"""Predicted decoys as negatives in training: molecules without spectra whose predictions must not outscore the
right one.

A user's in-silico library holds the predictions of many molecules that were never measured (the NIST 17 list
here); an unknown is identified when its own molecule's prediction outscores them. The mean squared error
rewards a prediction close to its own spectrum and nothing else, and on scaffold-held-out molecules of 300 Da
and more the predicted decoys of similar mass outscored the right entry (docs/results.md, fourth round). A
:class:`DecoyBank` holds featurised molecules that are not in the training data, and draws, for the molecules of
a batch, decoys of similar nominal mass; :func:`matchms_neims_training.distillation.losses.decoy_margin_loss` then asks
each measured spectrum to score its own prediction above the decoys' predictions by a margin.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from matchms_neims.chemistry import MoleculeError, describe, inchikey_block
from matchms_neims.featurize import Featurizer, compact_features, expand_features
from matchms_neims.problems import ProblemLog, RecordProblem
from matchms_neims_training.data.molecules import MoleculeFile

logger = logging.getLogger(__name__)


class DecoyBank:
    """Featurised decoy molecules (compact fingerprints, sorted by nominal mass) to draw by mass.

    Parameters
    ----------
    path
        A molecule file (``.smi``, ``.csv``/``.tsv`` or ``.sdf``;
        :class:`matchms_neims_training.data.molecules.MoleculeFile`).
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
        problems = ProblemLog("decoy molecules", where=str(path), log=logger)
        excluded = repeated = 0
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
                problems.report(error.problem() if isinstance(error, MoleculeError)
                                else RecordProblem(molecules.record_label(index), str(error)))
                continue
            seen.add(key)  # one decoy per molecule (stereoisomers and salts share the first block)
            features.append(compact_features(fingerprint))
            masses.append(info.nominal_mass)
        if not features:
            raise ValueError(f"{path}: no usable decoy molecules ({excluded} in the training data, {problems.count} "
                             "skipped)")
        order = np.argsort(masses, kind="stable")
        self.features = [features[i] for i in order]
        self.nominal_mass = np.asarray(masses, dtype=np.int64)[order]
        self.hard: dict[int, np.ndarray] | None = None  # cache row -> bank positions of its hardest decoys
        logger.info("decoy bank %s: %d molecules (%d in the training data and %d repeats left out, %d skipped)",
                    path, len(self.features), excluded, repeated, problems.count)

    def __len__(self) -> int:
        return len(self.features)

    def _expanded(self, positions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([expand_features(self.features[i], self.featurizer.size) for i in positions]))

    @torch.no_grad()
    def mine(self, model: torch.nn.Module, rows: np.ndarray, targets: np.ndarray, k: int,
             batch_size: int = 512) -> None:
        """Find, for each measured spectrum, the ``k`` decoys whose predictions by ``model`` it scores highest.

        The score is the search's weighted cosine (m/z x sqrt intensity), as in the decoy library of the
        evaluation; :meth:`draw_hard` then draws among them. ``rows`` are the spectra's cache rows, ``targets``
        their binned spectra (base peak 1). The model is run in eval mode and left in the mode it was in.
        """
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            predicted = []
            for start in range(0, len(self), batch_size):
                positions = np.arange(start, min(start + batch_size, len(self)))
                masses = torch.from_numpy(self.nominal_mass[positions]).to(device)
                predicted.append(model(self._expanded(positions).to(device), masses).float().cpu())
        finally:
            model.train(was_training)
        decoys = _search_vectors(torch.cat(predicted))
        queries = _search_vectors(torch.sqrt(torch.from_numpy(np.asarray(targets, dtype=np.float32)).clamp_min(0)))
        hard = {}
        k = min(k, len(self))
        for start in range(0, len(queries), 1024):
            top = torch.topk(queries[start:start + 1024] @ decoys.T, k, dim=1).indices.numpy()
            hard.update(zip((int(row) for row in rows[start:start + 1024]), top))
        self.hard = hard
        logger.info("decoys mined: the %d hardest of %d for each of %d spectra", k, len(self), len(rows))

    def draw_hard(self, rows: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoy per cache row, uniformly among its hardest (:meth:`mine`); ``(features, nominal_mass)``."""
        if self.hard is None:
            raise ValueError("no decoys mined yet (DecoyBank.mine)")
        lists = [self.hard[int(row)] for row in rows.tolist()]
        uniform = torch.rand(len(lists), generator=generator).numpy()
        chosen = np.array([found[int(u * len(found))] for found, u in zip(lists, uniform)], dtype=np.int64)
        return self._expanded(chosen), torch.from_numpy(self.nominal_mass[chosen])

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
        return self._expanded(chosen), torch.from_numpy(self.nominal_mass[chosen])


def _search_vectors(sqrt_spectra: torch.Tensor) -> torch.Tensor:
    """Unit vectors of the search's weighted cosine (m/z x sqrt intensity) of sqrt-intensity spectra."""
    mz = torch.arange(sqrt_spectra.shape[-1], dtype=sqrt_spectra.dtype)
    return torch.nn.functional.normalize(sqrt_spectra * mz, dim=-1)
