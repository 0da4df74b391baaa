"""Teacher network: GINEConv graph branch + ECFP branch -> bidirectional head, with MC-dropout uncertainty.

The graph branch reads the categorical atom and bond features of
:func:`matchms_neims.featurize.molecular_graph` (torch_geometric's OGB-style features plus an
isotope-shift column). A bond-breaking attention scores every bond from ``[h_i || h_j || e_ij]``; the
scores (sigmoid probabilities) scale the bond embeddings that enter every message-passing layer, so
they shape the prediction, and they are returned for inspection and for later supervision.

For self-supervised pretraining the bond features of chosen edges can be replaced by a learnt mask
embedding; :meth:`TeacherGNN.masked_bond_predictions` then predicts the bond type (and, where
conformers were generated, the bond length) of those edges from the atoms at both ends.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch_geometric.nn import AttentionalAggregation, GINEConv, PairNorm, global_max_pool, global_mean_pool
from torch_geometric.utils import dropout_edge
from torch_geometric.utils.smiles import e_map, x_map

from matchms_neims.featurize import ISOTOPE_SHIFT_CATEGORIES
from matchms_neims.models.capabilities import SpectrumModel
from matchms_neims.models.formula_head import apply_head, make_spectrum_head
from matchms_neims.models.neims import ResidualBottleneckBlock
from matchms_neims.models.sparse_linear import SparseInputLinear

#: Number of categories of each atom column of :func:`matchms_neims.featurize.molecular_graph`
#: (torch_geometric's ``from_rdmol`` columns, then the isotope shift).
ATOM_FEATURE_SIZES = (*(len(values) for values in x_map.values()), ISOTOPE_SHIFT_CATEGORIES)
#: Number of categories of each bond column (bond type, stereo, conjugation); column 0 is the bond type.
BOND_FEATURE_SIZES = tuple(len(values) for values in e_map.values())
N_BOND_TYPES = BOND_FEATURE_SIZES[0]
#: How the graph and fingerprint embeddings are combined (see :class:`TeacherGNN`).
FUSION_MODES = ("concat", "trunk")


class CategoricalEmbedding(nn.Module):
    """Sum of one learnt embedding per categorical feature column."""

    def __init__(self, sizes: tuple[int, ...], dim: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(size, dim) for size in sizes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.long()
        return sum(embedding(features[:, i]) for i, embedding in enumerate(self.embeddings))


class BondBreakingAttention(nn.Module):
    """Per-bond probability from an MLP over ``[h_i || h_j || e_ij]``."""

    def __init__(self, node_dim: int, edge_dim: int, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * node_dim + edge_dim, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, 1))

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_embedding: torch.Tensor) -> torch.Tensor:
        source, target = edge_index
        return torch.sigmoid(self.mlp(torch.cat([h[source], h[target], edge_embedding], dim=-1))).squeeze(-1)


class GINELayer(nn.Module):
    """GINEConv -> BatchNorm -> ReLU -> PairNorm (optional) -> dropout, with DropEdge while training."""

    def __init__(self, hidden_size: int, edge_dim: int, dropout: float, drop_edge: float, pair_norm: bool = True):
        super().__init__()
        mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size))
        self.conv = GINEConv(mlp, edge_dim=edge_dim)
        self.norm = nn.BatchNorm1d(hidden_size)
        self.pair_norm = PairNorm() if pair_norm else None
        self.dropout = nn.Dropout(dropout)
        self.drop_edge = drop_edge

    def forward(self, h, edge_index, edge_features, batch):
        edge_index, kept = dropout_edge(edge_index, p=self.drop_edge, training=self.training)
        h = torch.relu(self.norm(self.conv(h, edge_index, edge_features[kept])))
        if self.pair_norm is not None:
            h = self.pair_norm(h, batch)
        return self.dropout(h)


class MaskedBondPrediction(NamedTuple):
    """Predictions for the masked edges, in the order of ``edge_mask.nonzero()``."""

    type_logits: torch.Tensor  # (n_masked, N_BOND_TYPES)
    length: torch.Tensor  # (n_masked,), bond length in angstrom (meaningful where conformers were available)


class TeacherOutput(NamedTuple):
    """Everything the teacher computes for a batch."""

    spectrum: torch.Tensor  # (batch, max_mz + 1), sqrt intensities
    bond_break_probability: torch.Tensor  # (n_edges,), one per directed bond of the batch graph
    ecfp_embedding: torch.Tensor  # (batch, ecfp_hidden[-1]; trunk mode: fusion_hidden[-1]), feature distillation
    graph_embedding: torch.Tensor  # (batch, 3 * hidden_size)


class TeacherGNN(SpectrumModel):
    """GINE + ECFP hybrid teacher.

    Parameters
    ----------
    atom_embedding_dim, bond_embedding_dim
        Sizes of the categorical atom and bond embeddings (128 in the design).
    hidden_size
        Width of the message-passing layers (256).
    n_layers
        Number of GINEConv layers (8).
    dropout
        Dropout after every GNN layer and in the ECFP and fusion MLPs (0.3).
    drop_edge
        Fraction of edges dropped per layer while training (0.2).
    attention_hidden
        Hidden size of the bond-breaking attention and of the attention-pooling gate.
    ecfp_size
        Length of the ECFP4 vector (4096).
    ecfp_transform
        ``"none"`` for ECFP bits (featurizer ``graph_ecfp``); ``"log1p"`` for Morgan counts
        (featurizer ``graph_ecfp_counts``), which keep how often a substructure occurs.
    ecfp_hidden
        Sizes of the ECFP branch layers (1024, 512); the last one is the exposed ``ecfp_embedding``.
    fusion_hidden
        Sizes of the fusion MLP after concatenating the pooled graph (3 * hidden) and ECFP embeddings.
    fusion_blocks
        Residual bottleneck blocks (as in the NEIMS baseline) after the fusion MLP, at width
        ``fusion_hidden[-1]``; 0 (the design) feeds the fusion MLP straight into the head.
    fusion_bottleneck_factor
        Middle width of those blocks as a fraction of ``fusion_hidden[-1]``.
    pair_norm
        Apply PairNorm after every GNN layer (the design). PairNorm centres the atom states of each
        molecule, so with it the mean-pooled part of the graph embedding is close to zero.
    fusion_mode
        ``"concat"`` (the design): ECFP MLP branch, concatenation with the pooled graph embedding,
        fusion MLP (+ ``fusion_blocks``). ``"trunk"``: the NEIMS baseline's residual trunk carries the
        count ECFP (input layer to ``fusion_hidden[-1]``, ``fusion_blocks`` bottleneck blocks, LayerNorm)
        and the pooled graph embedding is added to its input through a zero-initialised projection.
        The trunk's parameter names are the baseline's, so a trained baseline file (``init_from``)
        starts the teacher exactly at the baseline, and the graph branch learns what the fingerprint
        misses. ``ecfp_embedding`` is then the trunk output (``fusion_hidden[-1]`` wide) and
        ``ecfp_hidden`` is unused.
    max_mz, isotope_margin
        Output range and the bins allowed above the molecular mass (bidirectional head).
    head, formula_head
        Spectrum head and its options, as for :class:`~matchms_neims.models.neims.NeimsMLP`; the formula heads
        read ``graph.formula`` (``featurizer.formula``).
    """

    supports_uncertainty = True
    reads_graphs = True

    def __init__(self, atom_embedding_dim: int = 128, bond_embedding_dim: int = 128, hidden_size: int = 256,
                 n_layers: int = 8, dropout: float = 0.3, drop_edge: float = 0.2, attention_hidden: int = 128,
                 ecfp_size: int = 4096, ecfp_transform: str = "none", ecfp_hidden: tuple[int, ...] = (1024, 512),
                 fusion_hidden: tuple[int, ...] = (1024, 512), fusion_blocks: int = 0,
                 fusion_bottleneck_factor: float = 0.25, pair_norm: bool = True, fusion_mode: str = "concat",
                 max_mz: int = 500, isotope_margin: int = 5, head: str = "bidirectional",
                 formula_head: dict | None = None):
        super().__init__()
        if ecfp_transform not in ("none", "log1p"):
            raise ValueError(f"unknown ecfp_transform {ecfp_transform!r}; expected 'none' or 'log1p'")
        if fusion_mode not in FUSION_MODES:
            raise ValueError(f"unknown fusion_mode {fusion_mode!r}; expected one of {FUSION_MODES}")
        self.fusion_mode = fusion_mode
        self.max_mz = max_mz
        self.ecfp_transform = ecfp_transform
        self.atom_embedding = CategoricalEmbedding(ATOM_FEATURE_SIZES, atom_embedding_dim)
        self.bond_embedding = CategoricalEmbedding(BOND_FEATURE_SIZES, bond_embedding_dim)
        self.atom_projection = nn.Linear(atom_embedding_dim, hidden_size)
        self.bond_attention = BondBreakingAttention(hidden_size, bond_embedding_dim, attention_hidden)
        self.layers = nn.ModuleList(GINELayer(hidden_size, bond_embedding_dim, dropout, drop_edge, pair_norm)
                                    for _ in range(n_layers))
        self.attention_pool = AttentionalAggregation(
            nn.Sequential(nn.Linear(hidden_size, attention_hidden), nn.ReLU(), nn.Linear(attention_hidden, 1)))
        fusion_width = fusion_hidden[-1]
        bottleneck = max(1, int(round(fusion_width * fusion_bottleneck_factor)))
        if fusion_mode == "trunk":  # names as in NeimsMLP, so that a baseline file initialises the trunk
            self.input_layer = nn.Sequential(SparseInputLinear(ecfp_size, fusion_width), nn.ReLU(), nn.Dropout(dropout))
            self.graph_projection = nn.Linear(3 * hidden_size, fusion_width)
            nn.init.zeros_(self.graph_projection.weight)
            nn.init.zeros_(self.graph_projection.bias)
            self.blocks = nn.Sequential(
                *[ResidualBottleneckBlock(fusion_width, bottleneck, dropout) for _ in range(fusion_blocks)])
            self.final_norm = nn.Sequential(nn.LayerNorm(fusion_width), nn.ReLU())
        else:
            self.ecfp_branch = _mlp(ecfp_size, tuple(ecfp_hidden), dropout)
            self.fusion = _mlp(3 * hidden_size + ecfp_hidden[-1], tuple(fusion_hidden), dropout)
            self.fusion_blocks = nn.Sequential(
                *[ResidualBottleneckBlock(fusion_width, bottleneck, dropout) for _ in range(fusion_blocks)],
                *([nn.LayerNorm(fusion_width), nn.ReLU()] if fusion_blocks else []))
        self.head = make_spectrum_head(head, fusion_hidden[-1], max_mz, isotope_margin, formula_head)
        self.reads_formula = head != "bidirectional"
        self.distillation_embedding_size = fusion_width if fusion_mode == "trunk" else ecfp_hidden[-1]
        # self-supervised bond masking: a learnt "masked bond" embedding and heads over the bond's two atoms
        self.bond_mask_embedding = nn.Parameter(torch.randn(bond_embedding_dim) * 0.1)
        self.bond_type_head = nn.Sequential(nn.Linear(2 * hidden_size, attention_hidden), nn.ReLU(),
                                            nn.Linear(attention_hidden, N_BOND_TYPES))
        self.bond_length_head = nn.Sequential(nn.Linear(2 * hidden_size, attention_hidden), nn.ReLU(),
                                              nn.Linear(attention_hidden, 1))

    def encode_atoms(self, graph, edge_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Message passing: atom states after the last layer and the bond-breaking probability per edge.

        Parameters
        ----------
        graph
            A torch_geometric ``Data`` or ``Batch`` with ``x``, ``edge_index``, ``edge_attr`` (and ``batch``).
        edge_mask
            Optional boolean mask over edges whose bond features are replaced by the mask embedding.
        """
        batch = _batch_vector(graph)
        h = self.atom_projection(self.atom_embedding(graph.x))
        bond_embedding = self.bond_embedding(graph.edge_attr)
        if edge_mask is not None:
            bond_embedding = torch.where(edge_mask.unsqueeze(-1), self.bond_mask_embedding.to(bond_embedding.dtype),
                                         bond_embedding)
        bond_probability = self.bond_attention(h, graph.edge_index, bond_embedding)
        edge_features = bond_embedding * bond_probability.unsqueeze(-1)
        for layer in self.layers:
            h = layer(h, graph.edge_index, edge_features, batch)
        return h, bond_probability

    def masked_bond_predictions(self, graph, edge_mask: torch.Tensor) -> MaskedBondPrediction:
        """Bond type logits and bond lengths of the masked edges, predicted from the two atoms' states.

        The pair features ``[h_i + h_j || h_i * h_j]`` are symmetric, so both directions of a bond
        get the same prediction.
        """
        h, _ = self.encode_atoms(graph, edge_mask)
        source, target = graph.edge_index[:, edge_mask]
        pair = torch.cat([h[source] + h[target], h[source] * h[target]], dim=-1)
        return MaskedBondPrediction(self.bond_type_head(pair), self.bond_length_head(pair).squeeze(-1))

    def forward_with_details(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> TeacherOutput:
        """Run the teacher on a torch_geometric ``Batch`` (``x``, ``edge_index``, ``edge_attr``, ``batch``)."""
        batch = _batch_vector(graph)
        n_graphs = ecfp.shape[0]
        h, bond_probability = self.encode_atoms(graph)
        pooled = torch.cat([global_mean_pool(h, batch, n_graphs), global_max_pool(h, batch, n_graphs),
                            self.attention_pool(h, batch, dim_size=n_graphs)], dim=-1)
        ecfp = ecfp.to(pooled.dtype)
        ecfp = torch.log1p(ecfp) if self.ecfp_transform == "log1p" else ecfp
        formula = getattr(graph, "formula", None) if self.reads_formula else None
        if self.fusion_mode == "trunk":
            fused = self.final_norm(self.blocks(self.input_layer(ecfp) + self.graph_projection(pooled)))
            return TeacherOutput(apply_head(self.head, fused, nominal_mass, formula), bond_probability, fused, pooled)
        ecfp_embedding = self.ecfp_branch(ecfp)
        fused = self.fusion_blocks(self.fusion(torch.cat([pooled, ecfp_embedding], dim=-1)))
        return TeacherOutput(apply_head(self.head, fused, nominal_mass, formula), bond_probability, ecfp_embedding,
                             pooled)

    def forward(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """Predicted spectra in sqrt-intensity space, shape ``(batch, max_mz + 1)``."""
        return self.forward_with_details(graph, ecfp, nominal_mass).spectrum

    def distillation_embedding(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """The ``ecfp_embedding`` of :meth:`forward_with_details` (the student's feature loss imitates it)."""
        return self.forward_with_details(graph, ecfp, nominal_mass).ecfp_embedding


def _batch_vector(graph) -> torch.Tensor:
    batch = getattr(graph, "batch", None)
    return batch if batch is not None else torch.zeros(graph.x.shape[0], dtype=torch.long, device=graph.x.device)


def _mlp(in_features: int, sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_features, size), nn.ReLU(), nn.Dropout(dropout)]
        in_features = size
    return nn.Sequential(*layers)
