"""Loss functions and differentiable spectrum similarities for training."""

from __future__ import annotations

import torch
from torch import nn


def mass_weights(n_bins: int, mass_power: float, device=None) -> torch.Tensor:
    """Per-bin weights ``((mz + 1) / n_bins) ** mass_power``, normalised to mean 1."""
    mz = torch.arange(1, n_bins + 1, dtype=torch.float32, device=device)
    weights = (mz / n_bins) ** mass_power
    return weights / weights.mean()


def mass_weighted_mse(predicted_sqrt: torch.Tensor, target: torch.Tensor, mass_power: float = 1.0,
                      sample_weight: torch.Tensor | None = None) -> torch.Tensor:
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
    sample_weight
        Optional ``(batch,)`` weight per row (0 for rows without an experimental spectrum).
    """
    weights = mass_weights(target.shape[-1], mass_power, target.device)
    per_row = (weights * (predicted_sqrt - torch.sqrt(target.clamp_min(0))) ** 2).mean(dim=-1)
    return per_row.mean() if sample_weight is None else _weighted_mean(per_row, sample_weight)


def in_batch_retrieval_loss(predicted_sqrt: torch.Tensor, target: torch.Tensor, temperature: float = 0.05,
                            mz_power: float = 1.0, molecule: torch.Tensor | None = None) -> torch.Tensor:
    """Library search inside a batch as a loss (InfoNCE): each measured spectrum should score its own molecule's
    prediction above the predictions of the batch's other molecules.

    The score is the weighted cosine of ``search`` (``mz**mz_power * intensity**0.5``: the sqrt-intensity
    vectors times m/z), so the loss rewards what Recall@k measures: a prediction that is close to its
    spectrum *and* far from other molecules' spectra. The mean squared error alone rewards the first only;
    predictions of heavy molecules that look alike (generic fragments) then outscore the right one.
    Rows of the same molecule (equal ``molecule`` ids, or without ids equal predictions) are not counted as
    negatives of each other.

    Parameters
    ----------
    predicted_sqrt, target
        Model output (sqrt intensities) and binned spectra (base peak 1), shape ``(batch, n_bins)``.
    temperature
        Softmax temperature of the cosine scores.
    mz_power
        Exponent of the m/z weight (search's default 1).
    molecule
        Optional ``(batch,)`` molecule ids. Give them in training: under dropout two rows of one molecule get
        different predictions, which the equality test would take for two molecules.
    """
    mz = torch.arange(target.shape[-1], device=target.device, dtype=predicted_sqrt.dtype) ** mz_power
    queries = nn.functional.normalize(torch.sqrt(target.clamp_min(0)) * mz, dim=-1)
    candidates = nn.functional.normalize(predicted_sqrt * mz, dim=-1)
    logits = queries @ candidates.T / temperature
    if molecule is None:
        same = (predicted_sqrt.detach()[:, None, :] == predicted_sqrt.detach()[None, :, :]).all(-1)
    else:
        same = molecule[:, None] == molecule[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, -torch.inf)
    return nn.functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def decoy_margin_loss(predicted_sqrt: torch.Tensor, target: torch.Tensor, decoy_sqrt: torch.Tensor,
                      margin: float = 0.05, mz_power: float = 1.0) -> torch.Tensor:
    """Library search against predicted decoys as a loss: each measured spectrum should score its own molecule's
    prediction above every decoy's prediction by ``margin`` (a hinge on the search's weighted cosine).

    Unlike :func:`in_batch_retrieval_loss`, the negatives are predictions of molecules without spectra
    (:class:`matchms_neims_training.data.decoys.DecoyBank`, drawn near the batch's masses): the entries that outrank the
    right one in a user's in-silico library. A pair that already keeps the margin adds nothing, so the loss does not
    push easy pairs apart at the cost of the fit. The hinges of a spectrum are summed over the decoys and averaged over
    the spectra, so that the few hard pairs among many easy ones are not diluted by the batch's size.

    Parameters
    ----------
    predicted_sqrt, target
        Model output (sqrt intensities) and binned spectra (base peak 1), shape ``(batch, n_bins)``.
    decoy_sqrt
        Predictions of the decoys, shape ``(n_decoys, n_bins)``; every row is a negative of every spectrum.
    margin
        Weighted-cosine margin the right prediction should keep over each decoy.
    mz_power
        Exponent of the m/z weight (search's default 1).
    """
    mz = torch.arange(target.shape[-1], device=target.device, dtype=predicted_sqrt.dtype) ** mz_power
    queries = nn.functional.normalize(torch.sqrt(target.clamp_min(0)) * mz, dim=-1)
    own = (queries * nn.functional.normalize(predicted_sqrt * mz, dim=-1)).sum(-1)
    decoys = queries @ nn.functional.normalize(decoy_sqrt * mz, dim=-1).T
    return torch.relu(margin + decoys - own[:, None]).sum(dim=1).mean()


def batch_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise cosine similarity of two stacks of vectors."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps)


def sample_bond_mask(edge_index: torch.Tensor, fraction: float, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Choose a fraction of the bonds of a (batched) graph to mask; both directions of a bond are chosen together.

    At least one bond is chosen when the graph has any. Returns a boolean mask over the edges.
    """
    n_edges = edge_index.shape[1]
    if n_edges == 0:
        return torch.zeros(0, dtype=torch.bool, device=edge_index.device)
    low = torch.minimum(edge_index[0], edge_index[1])
    high = torch.maximum(edge_index[0], edge_index[1])
    _, bond_of_edge = torch.unique(torch.stack([low, high]), dim=1, return_inverse=True)
    n_bonds = int(bond_of_edge.max()) + 1
    draws = torch.rand(n_bonds, generator=generator, device="cpu").to(edge_index.device)
    chosen = draws < fraction
    if not chosen.any():
        chosen[draws.argmin()] = True
    return chosen[bond_of_edge]


def bond_masking_loss(prediction, graph, edge_mask: torch.Tensor, length_weight: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross entropy of the masked bonds' types (+ MSE of their lengths where ``graph.bond_length`` is known).

    Parameters
    ----------
    prediction
        :class:`matchms_neims.models.teacher.MaskedBondPrediction` for the edges of ``edge_mask``.
    graph
        The batched graph; ``edge_attr[:, 0]`` is the bond type. Optional ``bond_length`` (angstrom,
        NaN where unknown) adds a regression term weighted by ``length_weight``.

    Returns
    -------
    loss, accuracy
        The loss and the fraction of masked bonds whose type was predicted right.
    """
    bond_type = graph.edge_attr[edge_mask, 0].long()
    loss = torch.nn.functional.cross_entropy(prediction.type_logits, bond_type)
    lengths = getattr(graph, "bond_length", None)
    if lengths is not None and length_weight > 0:
        lengths = lengths[edge_mask]
        known = torch.isfinite(lengths)
        if known.any():
            loss = loss + length_weight * torch.nn.functional.mse_loss(prediction.length[known], lengths[known])
    accuracy = (prediction.type_logits.argmax(-1) == bond_type).float().mean()
    return loss, accuracy


# ---------------------------------------------------------------------------------- distillation

def tempered_distribution(sqrt_spectra: torch.Tensor, temperature: float, eps: float = 1e-3) -> torch.Tensor:
    """Spectra as distributions over m/z softened by a temperature: ``(relu(x) + eps) ** (1 / T)``, rows summing to 1.

    The analogue of a softmax with temperature for outputs that are (sqrt) intensities rather than
    logits: ``T > 1`` raises small peaks relative to the base peak, ``T = 1`` keeps the sqrt spectrum.
    """
    softened = (sqrt_spectra.clamp_min(0) + eps) ** (1.0 / temperature)
    return softened / softened.sum(dim=-1, keepdim=True)


def soft_distillation_loss(student_sqrt: torch.Tensor, teacher_sqrt: torch.Tensor, temperature: float = 1.0,
                           teacher_std: torch.Tensor | None = None, sample_weight: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Confidence-weighted KL divergence of the tempered teacher and student spectra, scaled by ``T ** 2``.

    Per bin the generalised KL term ``p log(p / q) - p + q`` (``p`` teacher, ``q`` student) is used; it is
    non-negative in every bin, so per-bin weights keep the loss >= 0, and it is 0 only where ``q = p``.

    Parameters
    ----------
    student_sqrt, teacher_sqrt
        Student output and teacher MC-mean, sqrt intensities, shape ``(batch, n_bins)``.
    temperature
        Softening temperature ``T`` (the schedule goes from 4 to 1).
    teacher_std
        Teacher MC-dropout std per bin; when given, bin ``i`` is weighted by ``1 / (1 + std_i)``.
    sample_weight
        Per-row weights (e.g. 0 for rows without a valid teacher label), shape ``(batch,)``.
    """
    p = tempered_distribution(teacher_sqrt, temperature)
    q = tempered_distribution(student_sqrt, temperature)
    terms = p * (torch.log(p) - torch.log(q)) - p + q
    if teacher_std is not None:
        terms = terms / (1.0 + teacher_std.clamp_min(0))
    per_row = terms.sum(dim=-1) * temperature ** 2
    return _weighted_mean(per_row, sample_weight)


def soft_mse_distillation_loss(student_sqrt: torch.Tensor, teacher_sqrt: torch.Tensor, temperature: float = 1.0,
                               teacher_std: torch.Tensor | None = None, mass_power: float = 1.0,
                               sample_weight: torch.Tensor | None = None, eps: float = 1e-3) -> torch.Tensor:
    """Confidence-weighted, mass-weighted MSE of the tempered teacher and student spectra, scaled by ``T ** 2``.

    The hard loss's form (:func:`mass_weighted_mse`) with the teacher's MC mean as the target: bins are
    weighted by m/z as in the hard loss and the library-search cosine, where the KL of
    :func:`soft_distillation_loss` weighs every m/z alike. Both spectra are tempered as
    ``(relu(x) + eps) ** (1 / T)`` first (``T = 1`` compares the sqrt spectra themselves).

    Parameters
    ----------
    student_sqrt, teacher_sqrt
        Student output and teacher MC-mean, sqrt intensities, shape ``(batch, n_bins)``.
    temperature
        Softening temperature ``T``.
    teacher_std
        Teacher MC-dropout std per bin; when given, bin ``i`` is weighted by ``1 / (1 + std_i)``.
    mass_power
        Exponent of the m/z weighting (:func:`mass_weights`).
    sample_weight
        Per-row weights (e.g. 0 for rows without a valid teacher label), shape ``(batch,)``.
    """
    weights = mass_weights(student_sqrt.shape[-1], mass_power, student_sqrt.device)
    student = (student_sqrt.clamp_min(0) + eps) ** (1.0 / temperature)
    teacher = (teacher_sqrt.clamp_min(0) + eps) ** (1.0 / temperature)
    terms = weights * (student - teacher) ** 2
    if teacher_std is not None:
        terms = terms / (1.0 + teacher_std.clamp_min(0))
    per_row = terms.mean(dim=-1) * temperature ** 2
    return _weighted_mean(per_row, sample_weight)


def feature_distillation_loss(projected: torch.Tensor, teacher_embedding: torch.Tensor,
                              sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between the projected student features and the teacher's ``ecfp_embedding``."""
    return _weighted_mean(((projected - teacher_embedding) ** 2).mean(dim=-1), sample_weight)


def switch_balance_loss(gate_probabilities: torch.Tensor, selected_experts: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer load-balancing loss ``n_experts * sum_e f_e * P_e``.

    ``f_e`` is the fraction of routing assignments that went to expert ``e`` (not differentiable) and
    ``P_e`` the mean gate probability of ``e``; the loss is smallest (1) when both are uniform.
    """
    n_experts = gate_probabilities.shape[-1]
    counts = torch.bincount(selected_experts.reshape(-1), minlength=n_experts).to(gate_probabilities.dtype)
    fraction = counts / counts.sum().clamp_min(1)
    return n_experts * (fraction * gate_probabilities.mean(dim=0)).sum()


def weight_balance_loss(expert_weights: torch.Tensor) -> torch.Tensor:
    """Imbalance of the experts' mean mixing weights: ``n_experts * sum_e (W_e - 1 / n_experts) ** 2``.

    ``W_e`` is the batch mean of expert ``e``'s mixing weight (zero where it was not chosen; the weights of a
    molecule sum to 1). The gate bias balances how often each expert is *chosen*, but the gate may still give
    a chosen expert a weight near zero (the bundled student: expert 3 chosen for 46% of NIST 17 molecules at a
    mean weight of 0.0005 when chosen), so it costs compute and learns nothing. This loss is 0 when every
    expert carries the same share of the mixture, and 1/3 for four experts of which one carries nothing.
    """
    n_experts = expert_weights.shape[-1]
    return n_experts * (expert_weights.float().mean(dim=0) - 1.0 / n_experts).square().sum()


def routing_entropy(gate_probabilities: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Mean entropy (nats) of the per-molecule gate distributions."""
    return -(gate_probabilities * torch.log(gate_probabilities + eps)).sum(dim=-1).mean()


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    weights = weights.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)
