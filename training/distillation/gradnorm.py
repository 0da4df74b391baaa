"""GradNorm (Chen et al., 2018) balancing of the distillation loss weights, with bounded weight ratios."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class GradNormWeights:
    """Loss weights adapted so that each weighted loss trains the shared features at a balanced rate.

    GradNorm compares ``G_i = ||d(w_i L_i) / d shared||`` with the target ``mean(G) * r_i ** alpha``, where
    ``r_i`` is loss ``i``'s ratio to its first value relative to the other losses' (tasks that learn more
    slowly get more weight). Here the weights take a multiplicative step
    ``w_i <- w_i * exp(-lr * (G_i - target_i) / mean(G))``, which does not depend on the scale of the
    gradients, then are renormalised to their starting sum and clamped to ``ratio_bounds`` times their
    starting values.

    Parameters
    ----------
    initial
        Starting weights (alpha, beta, gamma of the distillation loss).
    alpha
        GradNorm's asymmetry exponent (1.5 in the paper).
    lr
        Step size of the weight update.
    ratio_bounds
        Smallest and largest allowed ``w_i / initial_i``.
    """

    def __init__(self, initial: Sequence[float], alpha: float = 1.5, lr: float = 0.01,
                 ratio_bounds: tuple[float, float] = (0.5, 2.0)):
        self.initial = torch.tensor(list(initial), dtype=torch.float64)
        if (self.initial <= 0).any():
            raise ValueError(f"GradNorm needs positive starting weights, got {list(initial)}")
        self.weights = self.initial.clone()
        self.alpha = alpha
        self.lr = lr
        self.ratio_bounds = ratio_bounds
        self.initial_losses: torch.Tensor | None = None

    def ratios(self) -> torch.Tensor:
        return self.weights / self.initial

    def update(self, losses: Sequence[torch.Tensor], shared: torch.Tensor) -> torch.Tensor:
        """One GradNorm step from the current (unweighted) losses; returns the new weights.

        ``shared`` is a tensor (activation or parameter) every loss depends on; the autograd graph is
        kept, so the caller can still back-propagate the total loss.
        """
        gradient_norms = []
        for loss in losses:
            (gradient,) = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
            gradient_norms.append(0.0 if gradient is None else float(gradient.detach().norm()))
        norms = torch.tensor(gradient_norms, dtype=torch.float64)
        values = torch.tensor([float(loss.detach()) for loss in losses], dtype=torch.float64)
        if self.initial_losses is None:
            self.initial_losses = values.clamp_min(1e-12)
        weighted_norms = self.weights * norms
        mean_norm = weighted_norms.mean()
        if mean_norm > 0:
            relative = values / self.initial_losses
            relative = relative / relative.mean().clamp_min(1e-12)
            target = mean_norm * relative ** self.alpha
            self.weights = self.weights * torch.exp(-self.lr * (weighted_norms - target) / mean_norm)
            self.weights = self.weights * (self.initial.sum() / self.weights.sum())
            low, high = self.ratio_bounds
            self.weights = torch.minimum(torch.maximum(self.weights, self.initial * low), self.initial * high)
        return self.weights.clone()

    def state_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "initial_losses": None if self.initial_losses is None
                else self.initial_losses.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        losses = state.get("initial_losses")
        self.initial_losses = None if losses is None else torch.tensor(losses, dtype=torch.float64)
