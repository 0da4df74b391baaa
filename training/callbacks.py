"""Lightning plumbing shared by the training commands."""

from __future__ import annotations

import logging
import time

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from matchms_neims.utils import atomic_path

logger = logging.getLogger("training")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write Lightning checkpoints to a temporary file and rename, so an interrupt never leaves half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class EpochLogger(Callback):
    """Log one line of metrics per epoch (useful with the progress bar off, e.g. in batch jobs)."""

    def __init__(self):
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # runs after the epoch's validation, so metrics logged at the module's validation epoch end are included
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train", "val"))}
        text = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        logger.info("epoch %d (%.1f s): %s", trainer.current_epoch, time.perf_counter() - self._start, text)
