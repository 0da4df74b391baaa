"""Lightning plumbing shared by the training commands."""

from __future__ import annotations

import logging
import time

import h5py
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

import matchms_neims
from matchms_neims.checkpoint import state_dict_digest
from matchms_neims.utils import atomic_path

logger = logging.getLogger("matchms_neims_training")


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


class EpochSeed(Callback):
    """Reseed every random generator at the start of each training epoch from ``seed`` and the epoch number.

    Dropout, augmentation and anything else random in epoch ``e`` then draw the same numbers whether the run
    went straight through or was resumed from a checkpoint, so a resumed run ends with the same weights.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed_everything(self.seed * 1_009 + trainer.current_epoch + trainer.global_rank * 7_919, workers=True,
                        verbose=False)


class CheckpointMismatchError(ValueError):
    """A training checkpoint does not belong to this run: other data or model settings, or changed weights."""


class RunProvenance(Callback):
    """Record in every training checkpoint what produced it, and check that record when a run resumes.

    Each checkpoint gets ``checkpoint["matchms_neims"]``: the package version, the model class and settings,
    the featurizer, the fingerprint of the HDF5 cache (source file hash, cleaning, binning and split settings)
    and SHA-256 digests of the weights. Under EMA these are the averaged weights in ``state_dict`` and the live
    ones in ``current_model_state``; the callback must come after the weight-averaging callback, which rewrites
    ``state_dict``. :meth:`check` (called by :func:`matchms_neims_training.running.runner.fit` before it resumes)
    refuses a checkpoint whose weights no longer match their digests (the file was changed), or whose cache fingerprint
    or model settings differ from this run's, with the reason; another package version is logged and resumes
    when the weights fit. Training settings (epochs, learning rate, threads, ...) may change between the run
    and its resumption.

    Parameters
    ----------
    model_class, model_config, featurizer_config
        This run's model and featurizer settings.
    """

    KEY = "matchms_neims"

    def __init__(self, model_class: str, model_config: dict, featurizer_config: dict):
        self.identity = {"model_class": model_class, "model_config": dict(model_config),
                         "featurizer": dict(featurizer_config)}

    @staticmethod
    def data_fingerprint(datamodule) -> str | None:
        """The fingerprint of the datamodule's HDF5 cache (``None`` for data without a cache)."""
        cache = getattr(getattr(datamodule, "config", None), "cache", None)
        if cache is None:
            return None
        with h5py.File(cache, "r") as handle:
            return str(handle.attrs.get("fingerprint", ""))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {"code_version": matchms_neims.__version__, **self.identity,
                                "data_fingerprint": self.data_fingerprint(trainer.datamodule),
                                **self._weight_digests(checkpoint)}

    @staticmethod
    def _weight_digests(checkpoint: dict) -> dict[str, str]:
        """Digests of the checkpoint's weights: ``state_dict`` and, under weight averaging (EMA), the live
        weights that Lightning's ``WeightAveraging`` moves to ``current_model_state``."""
        return {f"{key}_sha256": state_dict_digest(checkpoint[key])
                for key in ("state_dict", "current_model_state") if key in checkpoint}

    def check(self, checkpoint: dict, data_fingerprint: str | None) -> None:
        """Refuse (:class:`CheckpointMismatchError`) a checkpoint that this run cannot resume from."""
        record = checkpoint.get(self.KEY)
        if record is None:
            logger.warning("the checkpoint has no provenance record (written by an older matchms-neims): "
                           "its data and settings cannot be checked")
            return
        digests = self._weight_digests(checkpoint)
        if any(record.get(key) != digest for key, digest in digests.items()):
            raise CheckpointMismatchError("the checkpoint's weights do not match their digest: the file was changed "
                                          "after it was written (tampered or corrupted); refusing to resume")
        if record.get("data_fingerprint") != data_fingerprint:
            raise CheckpointMismatchError(
                "the checkpoint was trained on other data (its cache fingerprint "
                f"{str(record.get('data_fingerprint'))[:12]}..., this run's {str(data_fingerprint)[:12]}...: the "
                "spectra file or the cleaning, binning or split settings changed); start a new run in another "
                "output_dir")
        for key, value in self.identity.items():
            if record.get(key) != value:
                raise CheckpointMismatchError(
                    f"the checkpoint has other {key.replace('_', ' ')} ({record.get(key)}) than this run ({value}); "
                    "start a new run in another output_dir")
        if record.get("code_version") != matchms_neims.__version__:
            logger.warning("resuming a checkpoint of matchms-neims %s with %s", record.get("code_version"),
                           matchms_neims.__version__)
