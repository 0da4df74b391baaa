"""NEIMS-style baseline: count ECFP -> residual bottleneck MLP -> bidirectional head."""

from __future__ import annotations

import torch
from torch import nn

from matchms_neims.models.capabilities import SpectrumModel
from matchms_neims.models.formula_head import apply_head, make_spectrum_head, split_formula_input
from matchms_neims.models.sparse_linear import SparseInputLinear


class ResidualBottleneckBlock(nn.Module):
    """``x + Dropout(Linear(ReLU(Linear(ReLU(LayerNorm(x))))))`` with a narrower middle layer."""

    def __init__(self, width: int, bottleneck: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(width),
            nn.ReLU(),
            nn.Linear(width, bottleneck),
            nn.ReLU(),
            nn.Linear(bottleneck, width),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class NeimsMLP(SpectrumModel):
    """The NEIMS baseline network.

    Parameters
    ----------
    input_size
        Length of the count fingerprint.
    hidden_size
        Width of the residual stream (2000 in NEIMS).
    n_blocks
        Number of residual bottleneck blocks (7 in NEIMS).
    bottleneck_factor
        Middle width of each block as a fraction of ``hidden_size``.
    dropout
        Dropout rate inside the blocks and after the input layer.
    max_mz
        Largest predicted m/z.
    isotope_margin
        Bins above the molecular mass that may carry intensity.
    input_transform
        ``"log1p"`` (counts -> log(1 + count)) or ``"none"``.
    head
        Spectrum head: ``"bidirectional"`` (NEIMS), ``"formula"`` (subformulae with exact isotope envelopes,
        :class:`~matchms_neims.models.formula_head.FormulaHead`) or ``"mixed"`` (both, gated per m/z). The
        formula heads read the formula count vector appended to the fingerprint (``featurizer.formula``).
    formula_head
        Keywords of :class:`~matchms_neims.models.formula_head.FormulaHead` (``hidden``, ``max_subformulae``,
        ``extra_hydrogens``).
    """

    supports_uncertainty = True  # MC dropout (SpectrumModel.predict_with_uncertainty)

    def __init__(self, input_size: int = 4096, hidden_size: int = 2000, n_blocks: int = 7,
                 bottleneck_factor: float = 0.5, dropout: float = 0.25, max_mz: int = 500,
                 isotope_margin: int = 5, input_transform: str = "log1p", head: str = "bidirectional",
                 formula_head: dict | None = None):
        super().__init__()
        if input_transform not in ("log1p", "none"):
            raise ValueError(f"unknown input_transform {input_transform!r}")
        self.input_transform = input_transform
        self.max_mz = max_mz
        self.input_layer = nn.Sequential(SparseInputLinear(input_size, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        bottleneck = max(1, int(round(hidden_size * bottleneck_factor)))
        self.blocks = nn.Sequential(
            *[ResidualBottleneckBlock(hidden_size, bottleneck, dropout) for _ in range(n_blocks)])
        self.final_norm = nn.Sequential(nn.LayerNorm(hidden_size), nn.ReLU())
        self.head = make_spectrum_head(head, hidden_size, max_mz, isotope_margin, formula_head)
        self.reads_formula = head != "bidirectional"

    def embed(self, fingerprint: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(fingerprint) if self.input_transform == "log1p" else fingerprint
        return self.final_norm(self.blocks(self.input_layer(x)))

    def forward(self, fingerprint: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """Predicted spectra in sqrt-intensity space, shape ``(batch, max_mz + 1)``."""
        fingerprint, formula = split_formula_input(fingerprint, self.reads_formula)
        return apply_head(self.head, self.embed(fingerprint), nominal_mass, formula)
