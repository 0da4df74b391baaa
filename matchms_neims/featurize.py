"""Molecular features shared by every model.

* :func:`neims_count_fingerprint`: the NEIMS input, a folded Morgan count fingerprint (radius 2, 4096).
* :func:`student_fingerprint`: ECFP4 bits (4096) + folded Morgan counts (2048) = 6144 values.
* :func:`molecular_graph`: a :class:`torch_geometric.data.Data` graph with categorical atom and bond
  features (the OGB-style features of :func:`torch_geometric.utils.from_rdmol` plus an isotope-shift
  column, so that labelled atoms such as 13C or 2H are visible to graph models).
* ``graph_ecfp`` / ``graph_ecfp_counts`` (the teacher's input): the graph with its ECFP4 bits or
  folded Morgan counts attached as ``graph.ecfp``.

:class:`Featurizer` turns SMILES into the model input named in a model's config and checks that
the molecule fits the model's m/z range, raising :class:`~matchms_neims.chemistry.MoleculeError`
per record otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from matchms_neims.chemistry import MoleculeError, MoleculeInfo, describe, parse_smiles
from matchms_neims.subformulae import FORMULA_SIZE, formula_counts

FEATURE_KINDS = ("neims_count_ecfp", "student_fingerprint", "graph", "graph_ecfp", "graph_ecfp_counts")
#: Categories of the isotope-shift atom column: mass number minus that of the most common isotope, clipped to 0..3.
ISOTOPE_SHIFT_CATEGORIES = 4


@lru_cache(maxsize=8)
def _morgan_generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def neims_count_fingerprint(mol: Chem.Mol, n_bits: int = 4096, radius: int = 2) -> np.ndarray:
    """Folded Morgan (ECFP) count fingerprint as float32, as used by NEIMS."""
    return _morgan_generator(radius, n_bits).GetCountFingerprintAsNumPy(mol).astype(np.float32)


def ecfp_bits(mol: Chem.Mol, n_bits: int = 4096, radius: int = 2) -> np.ndarray:
    """Folded ECFP bit vector (ECFP4 for radius 2) as float32."""
    return _morgan_generator(radius, n_bits).GetFingerprintAsNumPy(mol).astype(np.float32)


def student_fingerprint(mol: Chem.Mol, n_bits: int = 4096, n_count_bits: int = 2048, radius: int = 2) -> np.ndarray:
    """ECFP4 bits (``n_bits``) followed by folded Morgan counts (``n_count_bits``): 6144 values by default.

    Equal to :func:`ecfp_bits` and :func:`neims_count_fingerprint` side by side, but computed from one
    unfolded Morgan count fingerprint: RDKit folds an environment id into bit ``id % size``, so both parts
    are folds of the same ids (one fingerprint run instead of two).
    """
    elements = _morgan_generator(radius, n_bits).GetSparseCountFingerprint(mol).GetNonzeroElements()
    ids = np.fromiter(elements.keys(), dtype=np.int64, count=len(elements))
    counts = np.fromiter(elements.values(), dtype=np.float64, count=len(elements))
    features = np.zeros(n_bits + n_count_bits, dtype=np.float32)
    features[ids % n_bits] = 1.0
    features[n_bits:] = np.bincount(ids % n_count_bits, weights=counts, minlength=n_count_bits)
    return features


#: Bits of a compact fingerprint entry that hold the value (the rest hold the index).
_VALUE_BITS = 8


def compact_features(features):
    """A fingerprint as its non-zero entries, each ``index << 8 | min(value, 255)`` in one int32 array.

    A student fingerprint has about 50 non-zero values of 6144, so this takes about 200 bytes instead of
    6144 (uint8) or 24,576 (float32). Fingerprint values are counts or bits (non-negative integers); counts
    above 255 are capped, as in the HDF5 cache. Other features (graphs) are returned as they are.
    """
    if not isinstance(features, np.ndarray):
        return features
    nonzero = np.flatnonzero(features)
    values = np.minimum(features[nonzero], 2**_VALUE_BITS - 1).astype(np.int32)
    return (nonzero.astype(np.int32) << _VALUE_BITS) | values


def expand_features(compact: np.ndarray, size: int) -> np.ndarray:
    """The float32 fingerprint of length ``size`` from :func:`compact_features`' entries."""
    features = np.zeros(size, dtype=np.float32)
    features[compact >> _VALUE_BITS] = compact & (2**_VALUE_BITS - 1)
    return features


def isotope_shifts(mol: Chem.Mol) -> np.ndarray:
    """Per atom: mass number minus that of the element's most common isotope (0 when unlabelled), clipped to 0..3."""
    table = Chem.GetPeriodicTable()
    shifts = [atom.GetIsotope() - table.GetMostCommonIsotope(atom.GetAtomicNum()) if atom.GetIsotope() else 0
              for atom in mol.GetAtoms()]
    return np.clip(np.array(shifts, dtype=np.int64), 0, ISOTOPE_SHIFT_CATEGORIES - 1)


def molecular_graph(mol: Chem.Mol):
    """Molecular graph with categorical atom (9 + isotope shift) and bond (3) features.

    ``x`` holds torch_geometric's ``from_rdmol`` atom columns followed by :func:`isotope_shifts`;
    ``edge_attr`` holds bond type, stereo and conjugation; both directions of every bond are edges.
    """
    import torch
    from torch_geometric.utils import from_rdmol

    graph = from_rdmol(mol)
    shifts = torch.from_numpy(isotope_shifts(mol)).unsqueeze(-1)
    graph.x = torch.cat([graph.x, shifts.to(graph.x.dtype)], dim=-1)
    return graph


def graph_with_ecfp(mol: Chem.Mol, n_bits: int = 4096, radius: int = 2, counts: bool = False):
    """:func:`molecular_graph` with the ECFP attached as ``graph.ecfp`` (uint8, shape ``(1, n_bits)``).

    ``counts=False``: ECFP bits; ``counts=True``: folded Morgan counts (clipped at 255).
    Batching with :class:`torch_geometric.data.Batch` stacks ``ecfp`` to ``(n_graphs, n_bits)``.
    """
    import torch

    graph = molecular_graph(mol)
    values = neims_count_fingerprint(mol, n_bits, radius) if counts else ecfp_bits(mol, n_bits, radius)
    graph.ecfp = torch.from_numpy(np.minimum(values, 255).astype(np.uint8))[None]
    return graph


def collate_features(kind: str, features: list):
    """Stack the features of several molecules into the model's positional inputs (a tuple).

    Fingerprint kinds give ``(tensor,)`` of shape ``(batch, size)``; ``graph`` gives ``(Batch,)`` and
    ``graph_ecfp`` and ``graph_ecfp_counts`` give ``(Batch, ecfp)``, the teacher's ``(graph, ecfp)`` inputs.
    """
    import torch

    if kind.startswith("graph"):
        from torch_geometric.data import Batch

        batch = Batch.from_data_list(list(features))
        return (batch,) if kind == "graph" else (batch, batch.ecfp)
    return (torch.from_numpy(np.stack([np.asarray(item, dtype=np.float32) for item in features])),)


@dataclass
class FeaturizedMolecule:
    """Model input of one molecule with its identity."""

    info: MoleculeInfo
    features: object  # numpy vector or torch_geometric Data


class Featurizer:
    """SMILES -> model input, with the checks every model needs.

    Parameters
    ----------
    kind
        One of :data:`FEATURE_KINDS`.
    max_mz
        Largest m/z the model predicts; molecules whose M+ lies above it are rejected.
    n_bits, radius
        Fingerprint size and Morgan radius (fingerprint kinds).
    n_count_bits
        Size of the count part of the student fingerprint.
    formula
        Give models with a formula head the molecule's formula count vector
        (:func:`~matchms_neims.subformulae.formula_counts`, :data:`~matchms_neims.subformulae.FORMULA_SIZE`
        values): appended to a fingerprint, or as ``graph.formula`` (shape ``(1, FORMULA_SIZE)``) of a graph.
    """

    def __init__(self, kind: str = "neims_count_ecfp", max_mz: int = 500, n_bits: int = 4096, radius: int = 2,
                 n_count_bits: int = 2048, formula: bool = False):
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")
        self.formula = bool(formula)
        self.kind = kind
        self.max_mz = max_mz
        self.n_bits = n_bits
        self.radius = radius
        self.n_count_bits = n_count_bits

    @property
    def size(self) -> int:
        """Length of the feature vector (fingerprint kinds)."""
        size = self.n_bits + self.n_count_bits if self.kind == "student_fingerprint" else self.n_bits
        return size + FORMULA_SIZE if self.formula else size

    def features_of_mol(self, mol: Chem.Mol):
        if self.kind in ("neims_count_ecfp", "student_fingerprint"):
            if self.kind == "neims_count_ecfp":
                fingerprint = neims_count_fingerprint(mol, self.n_bits, self.radius)
            else:
                fingerprint = student_fingerprint(mol, self.n_bits, self.n_count_bits, self.radius)
            if self.formula:
                fingerprint = np.concatenate([fingerprint, formula_counts(mol).astype(np.float32)])
            return fingerprint
        if self.kind in ("graph_ecfp", "graph_ecfp_counts"):
            graph = graph_with_ecfp(mol, self.n_bits, self.radius, counts=self.kind == "graph_ecfp_counts")
        else:
            graph = molecular_graph(mol)
        if self.formula:
            import torch

            graph.formula = torch.from_numpy(formula_counts(mol).astype(np.float32))[None]
        return graph

    def collate(self, features: list):
        """Model inputs for a list of this featurizer's outputs (see :func:`collate_features`)."""
        return collate_features(self.kind, features)

    def __call__(self, smiles: str, record: str = "molecule") -> FeaturizedMolecule:
        """Featurize one SMILES.

        Raises
        ------
        MoleculeError
            Unparsable SMILES, unsupported content, or M+ above ``max_mz``.
        """
        mol = parse_smiles(smiles, record)
        info = describe(mol)
        if info.nominal_mass > self.max_mz:
            raise MoleculeError(
                record, f"molecular ion m/z {info.nominal_mass} is above the model's range 0..{self.max_mz}")
        if info.nominal_mass < 2:
            raise MoleculeError(record, f"molecular ion m/z {info.nominal_mass} is too small to predict")
        try:
            features = self.features_of_mol(mol)
        except ValueError as error:  # from_rdmol: an atom or bond property outside its categories
            raise MoleculeError(record, f"cannot build the molecular graph: {error}") from error
        return FeaturizedMolecule(info=info, features=features)

    def to_config(self) -> dict:
        config = {"kind": self.kind, "max_mz": self.max_mz, "n_bits": self.n_bits, "radius": self.radius,
                  "n_count_bits": self.n_count_bits}
        if self.formula:  # absent otherwise, so that the files of models without a formula head stay as they were
            config["formula"] = True
        return config
