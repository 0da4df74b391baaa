"""Loss functions and differentiable spectrum similarities for training."""

from __future__ import annotations

import torch


def mass_weights(n_bins: int, mass_power: float, device=None) -> torch.Tensor:
    """Per-bin weights ``((mz + 1) / n_bins) ** mass_power``, normalised to mean 1."""
    mz = torch.arange(1, n_bins + 1, dtype=torch.float32, device=device)
    weights = (mz / n_bins) ** mass_power
    return weights / weights.mean()


def mass_weighted_mse(predicted_sqrt: torch.Tensor, target: torch.Tensor, mass_power: float = 1.0) -> torch.Tensor:
    """Mean squared error in sqrt-intensity space with heavier weight on high m/z bins.

    Parameters
    ----------
    predicted_sqrt
        Model output (sqrt of relative intensity), shape ``(batch, n_bins)``.
    target
        Binned spectra, base peak 1, shape ``(batch, n_bins)``.
    mass_power
        Exponent of the m/z weighting (0: plain MSE). Fragments at high m/z are rarer and carry
        more structural information, as in NEIMS' weighted cosine.
    """
    weights = mass_weights(target.shape[-1], mass_power, target.device)
    return (weights * (predicted_sqrt - torch.sqrt(target.clamp_min(0))) ** 2).mean()


def batch_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise cosine similarity of two stacks of vectors."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps)
