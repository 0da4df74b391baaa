"""Self-supervised pretraining of the teacher's graph encoder (``matchms-neims train teacher-pretrain``).

Bond masking: for every molecule a fraction of its bonds (both directions) get a learnt "masked"
embedding instead of their features, and the encoder predicts their bond types (cross entropy) from
the two atoms' final states; with ``pretraining.conformers > 0`` it also regresses their lengths,
averaged over RDKit ETKDG conformers. Molecules come from SMILES/CSV/SDF files through lazy
byte-offset indexes (:mod:`matchms_neims_training.data.molecules`), plus the training split of the spectra data, and
graphs are built on the fly, so the molecule list never has to fit in RAM. Molecules of the
validation and test splits are skipped so that no held-out structure is seen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rdkit import Chem
from torch.utils.data import DataLoader, Dataset, Subset

from matchms_neims.chemistry import MoleculeError, inchikey_block
from matchms_neims.featurize import molecular_graph
from matchms_neims.problems import ProblemLog, RecordProblem
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.augment import conformer_distances
from matchms_neims_training.data.cache import CacheMetadata, build_cache
from matchms_neims_training.data.featurizer import make_featurizer
from matchms_neims_training.data.molecules import MoleculeFile, SmilesList
from matchms_neims_training.data.splits import SPLITS
from matchms_neims_training.distillation.losses import bond_masking_loss, sample_bond_mask
from matchms_neims_training.running.optim import module_optimization
from matchms_neims_training.running.runner import export, fit, prepare

logger = logging.getLogger(__name__)


class MaskedBondDataset(Dataset):
    """Molecular graphs for bond masking, built lazily from several molecule sources.

    Items are torch_geometric ``Data`` graphs, or ``None`` for records that cannot be used (unparsable,
    held out, no bonds); :class:`GraphCollator` drops those.

    Parameters
    ----------
    sources
        :class:`~matchms_neims_training.data.molecules.MoleculeFile` /
        :class:`~matchms_neims_training.data.molecules.SmilesList` objects.
    exclude_keys
        InChIKey first blocks to skip (the held-out molecules).
    conformers
        Conformers per molecule for bond-length targets (0: none).
    seed
        Seed of the conformer embedding (per molecule: seed + index).
    """

    def __init__(self, sources: list, exclude_keys: set[str] | None = None, conformers: int = 0, seed: int = 0):
        self.sources = sources
        self.ends = np.cumsum([len(source) for source in sources])
        self.exclude_keys = exclude_keys or set()
        self.conformers = conformers
        self.seed = seed
        self.skipped: set[int] = set()
        self.problems = ProblemLog("pretraining molecules", log=logger)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int):
        which = int(np.searchsorted(self.ends, index, side="right"))
        local = index - (int(self.ends[which - 1]) if which else 0)
        source = self.sources[which]
        try:
            mol = source.molecule(local)
            if self.exclude_keys and inchikey_block(Chem.MolToInchiKey(mol)) in self.exclude_keys:
                return None
            graph = molecular_graph(mol)
        except (MoleculeError, ValueError) as error:
            if index not in self.skipped:  # each molecule reported once, however many epochs see it
                self.skipped.add(index)
                self.problems.report(error.problem() if isinstance(error, MoleculeError)
                                     else RecordProblem(source.record_label(local), str(error)))
            return None
        if graph.edge_index.shape[1] == 0:
            return None
        if self.conformers > 0:
            distances = conformer_distances(mol, self.conformers, seed=self.seed + index)
            lengths = (torch.from_numpy(distances)[graph.edge_index[0], graph.edge_index[1]] if distances is not None
                       else torch.full((graph.edge_index.shape[1],), float("nan")))
            graph.bond_length = lengths.float()
        return graph


class GraphCollator:
    """Batch graphs with torch_geometric, dropping ``None`` items; an all-``None`` batch gives ``None``."""

    def __call__(self, items: list):
        from torch_geometric.data import Batch

        graphs = [item for item in items if item is not None]
        return Batch.from_data_list(graphs) if graphs else None


class PretrainDataModule(L.LightningDataModule):
    """Molecule files + the training split of the spectra data, split into pretraining train/val subsets."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.config = config
        self.datasets: dict[str, Subset] = {}

    def setup(self, stage: str | None = None) -> None:
        pretraining = self.config.pretraining
        sources: list = [MoleculeFile(path, pretraining.max_molecules) for path in pretraining.molecules]
        exclude: set[str] = set()
        if pretraining.include_training_split or pretraining.exclude_held_out:
            metadata = CacheMetadata(build_cache(self.config.data, progress=False))
            keys = metadata.columns["molecule_key"]
            if pretraining.exclude_held_out:
                exclude = set(keys[metadata.split != SPLITS.index("train")])
            if pretraining.include_training_split:
                train_smiles = sorted(set(metadata.columns["smiles"][metadata.split == SPLITS.index("train")]))
                sources.append(SmilesList(train_smiles, "training split"))
        dataset = MaskedBondDataset(sources, exclude, pretraining.conformers, self.config.trainer.seed)
        order = np.random.default_rng(self.config.trainer.seed).permutation(len(dataset))
        n_val = max(1, int(round(pretraining.val_fraction * len(dataset))))
        self.datasets = {"val": Subset(dataset, order[:n_val].tolist()),
                         "train": Subset(dataset, order[n_val:].tolist())}
        logger.info("pretraining on %d molecules (%d for validation) from %s%s; %d held-out keys excluded",
                    len(dataset) - n_val, n_val, ", ".join(str(p) for p in pretraining.molecules),
                    " + the training split" if pretraining.include_training_split else "", len(exclude))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(self.datasets[split], batch_size=self.config.data.batch_size, shuffle=shuffle,
                          num_workers=workers, persistent_workers=workers > 0, collate_fn=GraphCollator())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)


class TeacherPretrainModule(L.LightningModule):
    """Bond-masking pretraining of :class:`~matchms_neims.models.teacher.TeacherGNN`'s graph encoder.

    Logs ``train_bond_loss``, ``val_bond_loss`` and ``val_bond_accuracy`` (masked bond types predicted
    right; validation masks are seeded per batch so the metric is comparable across epochs).
    """

    def __init__(self, config: dict):
        super().__init__()
        from matchms_neims.models.teacher import TeacherGNN

        self.save_hyperparameters({"config": config})
        self.config = TrainConfig.from_dict(config)
        self.model = TeacherGNN(**self.config.model)

    def _step(self, graph, batch_idx: int, stage: str):
        if graph is None:
            return None
        generator = None if stage == "train" else torch.Generator().manual_seed(batch_idx)
        mask = sample_bond_mask(graph.edge_index, self.config.masking.fraction, generator)
        prediction = self.model.masked_bond_predictions(graph, mask)
        loss, accuracy = bond_masking_loss(prediction, graph, mask, self.config.masking.length_weight)
        size = int(graph.num_graphs)
        self.log(f"{stage}_bond_loss", loss, prog_bar=True, batch_size=size, sync_dist=stage != "train")
        self.log(f"{stage}_bond_accuracy", accuracy, prog_bar=stage != "train", batch_size=size,
                 sync_dist=stage != "train")
        return loss

    def training_step(self, graph, batch_idx: int):
        return self._step(graph, batch_idx, "train")

    def validation_step(self, graph, batch_idx: int) -> None:
        self._step(graph, batch_idx, "val")

    def configure_optimizers(self):
        return module_optimization(self)


def pretrain_teacher(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Pretrain the teacher's graph encoder by bond masking and export it (``config.export.path``).

    The exported file is a complete TeacherGNN model file whose spectrum head is untrained; use it as
    ``init_from`` of ``train teacher``.
    """
    prepare(config, "teacher-pretrain", "TeacherGNN")
    datamodule = PretrainDataModule(config)
    module = TeacherPretrainModule(config.to_dict())
    best, best_path, best_score = fit(module, datamodule, config, "val_bond_accuracy", resume, progress)
    return export(config, best.model, make_featurizer(config), {
        "stage": "pretrained encoder (bond masking); the spectrum head is untrained",
        "pretraining_molecules": list(config.pretraining.molecules),
        "best_epoch_checkpoint": Path(best_path).name, "val_bond_accuracy": best_score})
