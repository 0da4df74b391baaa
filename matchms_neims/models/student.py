"""The student: a sparse mixture of expert MLPs on the student fingerprint (ECFP4 bits + folded Morgan counts).

A small gate MLP scores the experts per molecule; the ``top_k`` best experts run on that molecule only and
their outputs are mixed with the renormalised gate probabilities. Load is balanced without an auxiliary
loss as in DeepSeek-V3: a non-trained bias per expert (:attr:`StudentMoE.gate_bias`) is added to the gate
logits for the choice of experts only, and :meth:`StudentMoE.update_gate_bias` nudges it after each
training step so that overloaded experts are chosen less often. The mixing weights and the
``gate_probabilities`` (for an optional Switch-style balance loss or an entropy term) ignore the bias.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from matchms_neims.models.capabilities import SpectrumModel
from matchms_neims.models.formula_head import apply_head, make_spectrum_head, split_formula_input
from matchms_neims.models.sparse_linear import SparseInputLinear

COUNT_TRANSFORMS = ("log1p", "none")
#: Activations of the expert blocks, the input projection and the head MLP, by name.
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class StudentOutput(NamedTuple):
    """Everything :meth:`StudentMoE.forward_with_details` computes.

    Attributes
    ----------
    spectrum
        ``(batch, max_mz + 1)`` predicted spectra in sqrt-intensity space (rectified in eval mode only).
    expert_weights
        ``(batch, n_experts)`` mixing weight of each expert: the renormalised gate probabilities of the
        chosen experts (each row sums to 1), 0 for the experts not chosen.
    selected_experts
        ``(batch, top_k)`` indices of the chosen experts (long).
    gate_probabilities
        ``(batch, n_experts)`` softmax of the gate logits without the balancing bias.
    hidden
        ``(batch, width)`` layer-normalised mixture of the expert outputs (the features for feature distillation).
    """

    spectrum: torch.Tensor
    expert_weights: torch.Tensor
    selected_experts: torch.Tensor
    gate_probabilities: torch.Tensor
    hidden: torch.Tensor


class PreNormGeluBlock(nn.Module):
    """``x + Dropout(W2(GELU(W1(LayerNorm(x)))))`` with ``W1: width -> inner`` and ``W2: inner -> width``.

    ``activation`` replaces the GELU (e.g. ``nn.ReLU``); it has no parameters, so the weights' names stay.
    """

    def __init__(self, width: int, inner: int, dropout: float, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, inner),
            activation(),
            nn.Linear(inner, width),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


def _mlp(sizes: list[int], activation: type[nn.Module], dropout: float = 0.0, last_activation: bool = True,
         first_linear: type[nn.Linear] = nn.Linear) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, each followed by ``activation`` (and dropout when > 0).

    ``first_linear`` builds the first layer (e.g. :class:`SparseInputLinear` for a fingerprint input).
    """
    layers: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append((first_linear if index == 0 else nn.Linear)(size_in, size_out))
        if last_activation or index < len(sizes) - 2:
            layers.append(activation())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def expert_load(selected_experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Fraction of the routing assignments that went to each expert.

    Parameters
    ----------
    selected_experts
        ``(batch, top_k)`` chosen expert indices.
    n_experts
        Number of experts.

    Returns
    -------
    torch.Tensor
        ``(n_experts,)`` float fractions summing to 1 (all zeros for an empty batch).
    """
    counts = torch.bincount(selected_experts.reshape(-1).long(), minlength=n_experts).float()
    return counts / counts.sum().clamp_min(1.0)


class StudentMoE(SpectrumModel):
    """Sparse mixture-of-experts MLP predicting EI spectra from the 6144-value student fingerprint.

    fingerprint -> (log1p of the counts) -> gate MLP (top-k of logits + balancing bias) and
    input projection -> the chosen experts (residual pre-norm GELU blocks) -> weighted sum ->
    LayerNorm (``hidden``) -> head MLP -> spectrum head (:class:`~matchms_neims.models.heads.BidirectionalHead`
    by default, or the formula head).

    The default sizes give 29,978,723 parameters (about 60 MB in float16); each expert has 4.73 M, so
    about 20.5 M (everything but the 2 experts not chosen) are used per molecule.

    Parameters
    ----------
    n_bits
        Length of the ECFP4 bit part of the fingerprint (first ``n_bits`` values).
    n_count_bits
        Length of the folded Morgan count part (last ``n_count_bits`` values).
    width
        Width of the residual stream of the experts and of ``hidden``.
    expert_inner
        Inner width of each expert block.
    n_experts
        Number of experts.
    top_k
        Experts run per molecule.
    blocks_per_expert
        Residual blocks per expert.
    shared_experts
        Experts that run on every molecule besides the routed ones (DeepSeekMoE's shared experts): their
        residual updates are added to the routed mixture, so knowledge common to all molecules need not be
        learnt by each routed expert from its share of the data. 0: none (the design's student).
    gate_hidden
        Hidden layer sizes of the gate MLP (ReLU).
    head_hidden
        Layer sizes of the MLP between ``hidden`` and the spectrum head (activation, dropout). Empty: the
        head reads the activated ``hidden`` directly, as in the NEIMS baseline.
    activation
        ``"gelu"`` (default) or ``"relu"``, in the input projection, the expert blocks and the head MLP.
    dropout
        Dropout after the input projection, inside the expert blocks and in the head MLP.
    count_transform
        ``"log1p"`` (counts -> log(1 + count)) or ``"none"``.
    bias_update_rate
        Step of :meth:`update_gate_bias`.
    max_mz
        Largest predicted m/z.
    isotope_margin
        Bins above the molecular mass that may carry intensity.
    head, formula_head
        Spectrum head and its options, as for :class:`~matchms_neims.models.neims.NeimsMLP`; the formula heads
        read the formula count vector appended to the fingerprint (``featurizer.formula``).
    """

    has_expert_weights = True

    def __init__(self, n_bits: int = 4096, n_count_bits: int = 2048, width: int = 512, expert_inner: int = 768,
                 n_experts: int = 4, top_k: int = 2, blocks_per_expert: int = 6, shared_experts: int = 0,
                 gate_hidden: tuple[int, ...] = (512, 128), head_hidden: tuple[int, ...] = (2048, 1024),
                 dropout: float = 0.2, count_transform: str = "log1p", bias_update_rate: float = 1e-3,
                 max_mz: int = 500, isotope_margin: int = 5, activation: str = "gelu", head: str = "bidirectional",
                 formula_head: dict | None = None):
        super().__init__()
        if count_transform not in COUNT_TRANSFORMS:
            raise ValueError(f"unknown count_transform {count_transform!r}; expected one of {COUNT_TRANSFORMS}")
        if n_experts < 1 or not 1 <= top_k <= n_experts:
            raise ValueError(f"need 1 <= top_k <= n_experts, got top_k={top_k}, n_experts={n_experts}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[activation]
        self.n_bits = n_bits
        self.n_count_bits = n_count_bits
        self.n_experts = n_experts
        self.top_k = top_k
        self.count_transform = count_transform
        self.bias_update_rate = bias_update_rate
        self.max_mz = max_mz
        input_size = n_bits + n_count_bits
        self.gate = _mlp([input_size, *gate_hidden, n_experts], nn.ReLU, last_activation=False,
                         first_linear=SparseInputLinear)
        self.register_buffer("gate_bias", torch.zeros(n_experts))
        self.input_projection = nn.Sequential(SparseInputLinear(input_size, width), act(), nn.Dropout(dropout))
        self.experts = nn.ModuleList(
            nn.Sequential(*[PreNormGeluBlock(width, expert_inner, dropout, act) for _ in range(blocks_per_expert)])
            for _ in range(n_experts))
        self.shared_experts = nn.ModuleList(
            nn.Sequential(*[PreNormGeluBlock(width, expert_inner, dropout, act) for _ in range(blocks_per_expert)])
            for _ in range(shared_experts))
        self.final_norm = nn.LayerNorm(width)
        self.head_mlp = _mlp([width, *head_hidden], act, dropout=dropout) if head_hidden else nn.Sequential(act())
        self.head = make_spectrum_head(head, head_hidden[-1] if head_hidden else width, max_mz, isotope_margin,
                                       formula_head)
        self.reads_formula = head != "bidirectional"

    def transform_input(self, fingerprint: torch.Tensor) -> torch.Tensor:
        """The fingerprint (without a formula count vector) with ``count_transform`` applied to its count part."""
        fingerprint, _ = split_formula_input(fingerprint, self.reads_formula)
        fingerprint = fingerprint.float() if not fingerprint.is_floating_point() else fingerprint
        if self.count_transform == "none" or self.n_count_bits == 0:
            return fingerprint
        bits, counts = fingerprint[:, : self.n_bits], fingerprint[:, self.n_bits :]
        return torch.cat([bits, torch.log1p(counts)], dim=-1)

    def route(self, fingerprint: torch.Tensor, transformed: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Choose the experts of each molecule.

        Parameters
        ----------
        fingerprint
            ``(batch, n_bits + n_count_bits)`` student fingerprints.
        transformed
            Whether ``count_transform`` has been applied already.

        Returns
        -------
        gate_probabilities, selected_experts, expert_weights
            Softmax of the unbiased gate logits ``(batch, n_experts)``; the ``top_k`` experts with the
            highest biased logits ``(batch, top_k)``; their renormalised probabilities scattered into
            ``(batch, n_experts)`` (zeros elsewhere).
        """
        x = fingerprint if transformed else self.transform_input(fingerprint)
        logits = self.gate(x)
        gate_probabilities = torch.softmax(logits.float(), dim=-1)
        selected_experts = torch.topk(logits.detach().float() + self.gate_bias, self.top_k, dim=-1).indices
        chosen = gate_probabilities.gather(1, selected_experts)
        chosen = chosen / chosen.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(chosen.dtype).tiny)
        expert_weights = torch.zeros_like(gate_probabilities).scatter(1, selected_experts, chosen)
        return gate_probabilities, selected_experts, expert_weights

    def mix_experts(self, features: torch.Tensor, selected_experts: torch.Tensor,
                    expert_weights: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the chosen experts' outputs, plus the shared experts' residual updates.

        Each routed expert runs only on the rows that chose it; the shared experts run on every row.
        """
        dtype = torch.promote_types(features.dtype, expert_weights.dtype)
        mixture = features.new_zeros(features.shape, dtype=dtype)
        for index, expert in enumerate(self.experts):
            rows = (selected_experts == index).any(dim=-1).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            weight = expert_weights[rows, index].unsqueeze(-1)
            mixture.index_add_(0, rows, (expert(features[rows]) * weight).to(dtype))
        for shared in self.shared_experts:
            mixture = mixture + (shared(features) - features).to(dtype)
        return mixture

    def forward_with_details(self, fingerprint: torch.Tensor, nominal_mass: torch.Tensor) -> StudentOutput:
        """Spectra with the routing and the mixed expert features (see :class:`StudentOutput`)."""
        formula = split_formula_input(fingerprint, self.reads_formula)[1]
        x = self.transform_input(fingerprint)
        gate_probabilities, selected_experts, expert_weights = self.route(x, transformed=True)
        mixture = self.mix_experts(self.input_projection(x), selected_experts, expert_weights)
        hidden = self.final_norm(mixture)
        spectrum = apply_head(self.head, self.head_mlp(hidden), nominal_mass, formula)
        return StudentOutput(spectrum, expert_weights, selected_experts, gate_probabilities, hidden)

    def forward(self, fingerprint: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """Predicted spectra in sqrt-intensity space, shape ``(batch, max_mz + 1)``."""
        return self.forward_with_details(fingerprint, nominal_mass).spectrum

    @torch.no_grad()
    def update_gate_bias(self, expert_load: torch.Tensor) -> None:
        """Auxiliary-loss-free balancing step: ``gate_bias += bias_update_rate * sign(mean_load - expert_load)``.

        Parameters
        ----------
        expert_load
            ``(n_experts,)`` fraction of the routing assignments of a batch per expert (see :func:`expert_load`).
        """
        load = expert_load.detach().to(device=self.gate_bias.device, dtype=self.gate_bias.dtype)
        self.gate_bias.add_(self.bias_update_rate * torch.sign(load.mean() - load))


__all__ = ["ACTIVATIONS", "PreNormGeluBlock", "StudentMoE", "StudentOutput", "expert_load"]
