"""The bidirectional spectrum head shared by every model (NEIMS, Wei et al. 2019).

Fragment ions sit at small m/z (forward view) while the molecular ion and the ions formed by small
neutral losses sit just below the molecular mass (reverse view). The head predicts both views and
mixes them per m/z bin with a learnt sigmoid gate. The reverse view is predicted in neutral-loss
coordinates and shifted so that loss 0 lands on the molecular mass M; nothing is predicted above
M + ``isotope_margin``.
"""

from __future__ import annotations

import torch
from torch import nn


def reverse_to_mz(reverse: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
    """Map neutral-loss predictions onto the m/z axis: ``out[b, mz] = reverse[b, M_b - mz]`` for mz <= M_b."""
    n_bins = reverse.shape[-1]
    mz = torch.arange(n_bins, device=reverse.device)
    loss_index = nominal_mass.view(-1, 1).long() - mz.view(1, -1)
    valid = (loss_index >= 0) & (loss_index < n_bins)
    gathered = torch.gather(reverse, 1, loss_index.clamp(0, n_bins - 1))
    return gathered * valid.to(reverse.dtype)


def mass_mask(nominal_mass: torch.Tensor, n_bins: int, isotope_margin: int) -> torch.Tensor:
    """1.0 for m/z <= M + isotope_margin, else 0.0 (shape ``(batch, n_bins)``)."""
    mz = torch.arange(n_bins, device=nominal_mass.device).view(1, -1)
    return (mz <= nominal_mass.view(-1, 1) + isotope_margin).float()


class BidirectionalHead(nn.Module):
    """Forward + neutral-loss prediction mixed by a per-bin sigmoid gate.

    Parameters
    ----------
    in_features
        Size of the molecule embedding.
    max_mz
        Largest m/z predicted; the output has ``max_mz + 1`` bins.
    isotope_margin
        Bins above the nominal molecular mass that may carry intensity (isotopes, M+1 from
        self-protonation); everything beyond is zero.
    """

    def __init__(self, in_features: int, max_mz: int = 500, isotope_margin: int = 5):
        super().__init__()
        self.n_bins = max_mz + 1
        self.isotope_margin = isotope_margin
        self.forward_layer = nn.Linear(in_features, self.n_bins)
        self.reverse_layer = nn.Linear(in_features, self.n_bins)
        self.gate_layer = nn.Linear(in_features, self.n_bins)

    def forward(self, embedding: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """Return predicted spectra (sqrt intensity scale), shape ``(batch, max_mz + 1)``.

        In eval mode the output is rectified (non-negative). In training mode it is not: a ReLU on the
        output would stop the gradient of every bin predicted below zero, and as most bins of an EI
        spectrum are empty the network collapses to all-zero spectra. The loss pulls negative values
        of empty bins up to zero instead.
        """
        forward_view = self.forward_layer(embedding)
        reverse_view = reverse_to_mz(self.reverse_layer(embedding), nominal_mass)
        gate = torch.sigmoid(self.gate_layer(embedding))
        mixed = gate * forward_view + (1.0 - gate) * reverse_view
        if not self.training:
            mixed = torch.relu(mixed)
        return mixed * mass_mask(nominal_mass, self.n_bins, self.isotope_margin)
