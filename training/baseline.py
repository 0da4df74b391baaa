"""LightningModule of the NEIMS baseline and the ``train baseline`` entry point."""

from __future__ import annotations

import logging
import math
import shlex
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint

from matchms_neims.checkpoint import save_model
from matchms_neims.featurize import Featurizer
from matchms_neims.models import MODEL_CLASSES
from training.callbacks import AtomicCheckpointIO, EpochLogger
from training.config import TrainConfig
from training.data import SpectraDataModule
from training.losses import batch_cosine, mass_weighted_mse

logger = logging.getLogger(__name__)


class SpectrumRegressionModule(L.LightningModule):
    """Trains a fingerprint -> spectrum model (the baseline) with the mass-weighted sqrt-intensity MSE.

    Logs ``train_loss``, ``val_loss`` and ``val_cosine`` (mean cosine of sqrt intensities), the
    metric used for checkpoint selection and early stopping.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = TrainConfig.from_dict(config)
        self.model = MODEL_CLASSES[self.config.model_class](**self.config.model)

    def forward(self, features: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        return self.model(features, nominal_mass)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        predicted = self(batch["features"], batch["nominal_mass"])
        loss = mass_weighted_mse(predicted, batch["target"], self.config.optim.mass_power)
        batch_size = batch["target"].shape[0]
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        if stage != "train":
            cosine = batch_cosine(predicted, torch.sqrt(batch["target"].clamp_min(0))).mean()
            self.log(f"{stage}_cosine", cosine, prog_bar=True, batch_size=batch_size, sync_dist=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        optim = self.config.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)

        def schedule(epoch: int) -> float:
            if epoch < optim.warmup_epochs:
                return (epoch + 1) / (optim.warmup_epochs + 1)
            progress = (epoch - optim.warmup_epochs) / max(1, optim.max_epochs - optim.warmup_epochs)
            return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def make_featurizer(config: TrainConfig) -> Featurizer:
    f = config.featurizer
    return Featurizer(kind=f.kind, max_mz=config.data.max_mz, n_bits=f.n_bits, radius=f.radius,
                      n_count_bits=f.n_count_bits)


def train_baseline(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train, keep the best epoch by validation cosine, and export it as a matchms-neims model file.

    Parameters
    ----------
    config
        Training configuration (see ``training/configs/baseline.yaml``).
    resume
        Continue from ``<output_dir>/last.ckpt`` when it exists.
    progress
        Show Lightning's progress bar.

    Returns
    -------
    Path
        The exported model file (``config.export.path``).
    """
    if config.trainer.torch_threads:
        torch.set_num_threads(config.trainer.torch_threads)
    L.seed_everything(config.trainer.seed, workers=True)
    featurizer = make_featurizer(config)
    datamodule = SpectraDataModule(config.data, featurizer)
    module = SpectrumRegressionModule(config.to_dict())
    output_dir = Path(config.trainer.output_dir)
    checkpointing = ModelCheckpoint(dirpath=output_dir, filename="best-{epoch:03d}-{val_cosine:.4f}",
                                    monitor="val_cosine", mode="max", save_last=True, save_top_k=1)
    early_stopping = EarlyStopping(monitor="val_cosine", mode="max", patience=config.optim.early_stopping_patience)
    callbacks = [checkpointing, early_stopping, EpochLogger()]
    if config.optim.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=config.optim.ema_decay))
    trainer = L.Trainer(
        accelerator=config.trainer.accelerator, devices=config.trainer.devices, num_nodes=config.trainer.num_nodes,
        strategy=config.trainer.strategy, precision=config.trainer.precision, max_epochs=config.optim.max_epochs,
        gradient_clip_val=config.optim.gradient_clip, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()], default_root_dir=output_dir, enable_progress_bar=progress,
        log_every_n_steps=20, deterministic=False,
    )
    last = output_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        logger.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    best_path = checkpointing.best_model_path or str(last)
    best = SpectrumRegressionModule.load_from_checkpoint(best_path, map_location="cpu", weights_only=False)
    best_score = checkpointing.best_model_score
    metadata = {
        "name": config.export.name,
        "version": config.export.version,
        "model_class": config.model_class,
        "training_command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "training_data": config.data.spectra,
        "best_epoch_checkpoint": Path(best_path).name,
        "val_cosine": float(best_score) if best_score is not None else None,
        "split": {"method": config.data.split_method, "fractions": list(config.data.split_fractions),
                  "seed": config.data.split_seed},
    }
    exported = save_model(config.export.path, best.model, config.model, featurizer, metadata,
                          half_precision=config.export.half_precision)
    logger.info("exported %s (val_cosine %s)", exported, metadata["val_cosine"])
    return exported
