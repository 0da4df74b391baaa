"""Schedules of scalar training hyperparameters (the distillation temperature)."""

from __future__ import annotations

import math

TEMPERATURE_SCHEDULES = ("cosine", "linear", "exponential")


def temperature_at(epoch: int, max_epochs: int, start: float = 4.0, end: float = 1.0, kind: str = "cosine") -> float:
    """The distillation temperature at ``epoch`` (0-based): ``start`` at the first epoch, ``end`` at the last.

    Parameters
    ----------
    kind
        ``"cosine"`` (half cosine), ``"linear"`` or ``"exponential"`` (geometric; needs positive ends).
    """
    if kind not in TEMPERATURE_SCHEDULES:
        raise ValueError(f"unknown temperature schedule {kind!r}; expected one of {TEMPERATURE_SCHEDULES}")
    progress = min(1.0, max(0.0, epoch / max(1, max_epochs - 1)))
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "exponential":
        if start <= 0 or end <= 0:
            raise ValueError("an exponential temperature schedule needs positive start and end temperatures")
        return start * (end / start) ** progress
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
