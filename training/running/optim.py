"""Optimiser and learning-rate schedule shared by the training modules."""

from __future__ import annotations

import math

import torch

from matchms_neims_training.config import OptimConfig

SCHEDULERS = ("warmup_cosine", "cosine_restarts", "onecycle")


def configure_optimization(parameters, optim: OptimConfig, total_steps: int | None = None) -> dict:
    """AdamW plus the schedule named by ``optim.scheduler`` (Lightning's format).

    ``warmup_cosine``: linear warm-up for ``warmup_epochs``, then cosine decay to 2% of ``lr`` at
    ``max_epochs``. ``cosine_restarts``: :class:`torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`
    with ``T_0 = restart_period``, ``T_mult = restart_mult`` and ``eta_min = min_lr``. Both step once per
    epoch. ``onecycle``: :class:`torch.optim.lr_scheduler.OneCycleLR` up to ``max_lr`` over
    ``total_steps`` optimiser steps (``pct_start`` of them warming up), stepped every batch.
    """
    optimizer = torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.scheduler == "onecycle":
        if not total_steps:
            raise ValueError("optim.scheduler onecycle needs the number of training steps")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim.max_lr, total_steps=int(total_steps),
                                                        pct_start=optim.pct_start)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    if optim.scheduler == "cosine_restarts":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=optim.restart_period, T_mult=optim.restart_mult, eta_min=optim.min_lr)
    elif optim.scheduler == "warmup_cosine":
        def schedule(epoch: int) -> float:
            if epoch < optim.warmup_epochs:
                return (epoch + 1) / (optim.warmup_epochs + 1)
            progress = (epoch - optim.warmup_epochs) / max(1, optim.max_epochs - optim.warmup_epochs)
            return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    else:
        raise ValueError(f"optim.scheduler {optim.scheduler!r} is not one of {SCHEDULERS}")
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def module_optimization(module) -> dict:
    """:func:`configure_optimization` for a LightningModule with a ``config``; the step count comes from its trainer."""
    optim = module.config.optim
    total_steps = module.trainer.estimated_stepping_batches if optim.scheduler == "onecycle" else None
    return configure_optimization(module.parameters(), optim, total_steps)
