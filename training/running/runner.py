"""Shared Lightning run: trainer from the config, checkpoints, early stopping, resume and model export."""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.featurize import Featurizer
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.running.callbacks import AtomicCheckpointIO, EpochLogger, EpochSeed, RunProvenance

logger = logging.getLogger(__name__)


def training_command() -> str:
    """The command line that started this process, without the interpreter path."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def prepare(config: TrainConfig, command: str, model_class: str | None = None) -> None:
    """Check the config's model class for ``command``, set the CPU threads and seed everything."""
    if model_class is not None and config.model_class != model_class:
        raise ValueError(f"{command} needs model_class {model_class}, got {config.model_class!r}")
    if config.trainer.torch_threads:
        torch.set_num_threads(config.trainer.torch_threads)
    L.seed_everything(config.trainer.seed, workers=True)


def resume_checkpoint(config: TrainConfig, resume: bool) -> Path | None:
    """The run's ``last.ckpt`` when ``resume`` is asked for and the file exists, else ``None``."""
    last = Path(config.trainer.output_dir) / "last.ckpt"
    return last if resume and last.is_file() else None


def initialise_from(model: torch.nn.Module, path: str) -> int:
    """Copy the weights of a model file (e.g. a pretrained teacher, or the model a fine-tuning starts from) whose
    names and shapes match; returns the count."""
    source = load_model(path).model.state_dict()
    target = model.state_dict()
    matching = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    logger.info("initialised %d of %d tensors from %s", len(matching), len(target), path)
    return len(matching)


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, config: TrainConfig, monitor: str,
        resume: bool = False, progress: bool = True) -> tuple[L.LightningModule, str, float | None]:
    """Train with checkpointing and early stopping on ``monitor`` (maximised).

    Checkpoints go to ``config.trainer.output_dir`` (written atomically); ``resume`` continues from
    its ``last.ckpt``. Returns the best module (loaded on the CPU), its checkpoint path and score.

    A refit on all data (``data.split_method: all``, :mod:`matchms_neims_training.running.refit`) has no validation
    split: it trains ``optim.max_epochs`` epochs without early stopping and returns the last epoch (score ``None``).
    """
    output_dir = Path(config.trainer.output_dir)
    refit = config.data.split_method == "all"
    if refit:
        # the latest epoch kept as last.ckpt, so that an interrupted refit resumes (with save_top_k=0 Lightning
        # writes last.ckpt only at the end: it saves a last checkpoint only beside a top-k one)
        checkpointing = ModelCheckpoint(dirpath=output_dir, filename="last", save_top_k=1, enable_version_counter=False)
        selection = []
    else:
        checkpointing = ModelCheckpoint(dirpath=output_dir, filename="best-{epoch:03d}-{" + monitor + ":.4f}",
                                        monitor=monitor, mode="max", save_last=True, save_top_k=1)
        selection = [EarlyStopping(monitor=monitor, mode="max", patience=config.optim.early_stopping_patience)]
    provenance = RunProvenance(config.model_class, config.model, dataclasses.asdict(config.featurizer))
    averaging = [EMAWeightAveraging(decay=config.optim.ema_decay)] if config.optim.ema_decay > 0 else []
    # provenance comes after weight averaging: it digests the checkpoint's weights once EMA has placed them
    callbacks = [checkpointing, *selection, EpochLogger(), *averaging, provenance, EpochSeed(config.trainer.seed)]
    trainer = L.Trainer(
        accelerator=config.trainer.accelerator, devices=config.trainer.devices, num_nodes=config.trainer.num_nodes,
        strategy=config.trainer.strategy, precision=config.trainer.resolved_precision(),
        max_epochs=config.optim.max_epochs, gradient_clip_val=config.optim.gradient_clip or None,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], default_root_dir=output_dir,
        enable_progress_bar=progress, log_every_n_steps=20, deterministic=False,
        **({"limit_val_batches": 0, "num_sanity_val_steps": 0} if refit else {}),
    )
    resume_from = resume_checkpoint(config, resume)
    if resume_from is not None:
        logger.info("resuming from %s", resume_from)
        datamodule.prepare_data()  # the cache whose fingerprint the checkpoint must carry
        provenance.check(torch.load(resume_from, map_location="cpu", weights_only=True),
                         provenance.data_fingerprint(datamodule))
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                weights_only=True)  # checkpoints are plain tensors and dicts: loading never runs pickled code
    best_path = (None if refit else checkpointing.best_model_path) or str(output_dir / "last.ckpt")
    best = type(module).load_from_checkpoint(best_path, map_location="cpu", weights_only=True)
    score = checkpointing.best_model_score
    return best, best_path, float(score) if score is not None else None


def export(config: TrainConfig, model: torch.nn.Module, featurizer: Featurizer, extra_metadata: dict) -> Path:
    """Write the trained model as a matchms-neims model file (``config.export``) with its provenance."""
    metadata = {
        "name": config.export.name,
        "version": config.export.version,
        "model_class": config.model_class,
        "training_command": training_command(),
        "training_data": config.data.spectra,
        "split": {"method": config.data.split_method, "fractions": list(config.data.split_fractions),
                  "seed": config.data.split_seed},
        **extra_metadata,
    }
    if config.refit:  # the last epoch of a refit on all data: no validation score, the selection run's instead
        metadata = {key: value for key, value in metadata.items()
                    if key != "best_epoch_checkpoint" and not key.startswith("val_")}
        metadata["refit"] = config.refit
    exported = save_model(config.export.path, model, config.model, featurizer, metadata,
                          half_precision=config.export.half_precision)
    logger.info("exported %s", exported)
    return exported
