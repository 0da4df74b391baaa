"""Molecular features shared by the models, and chemistry helpers."""

from __future__ import annotations

import numpy as np
import pytest

from matchms_neims.chemistry import MoleculeError, describe, inchikey_block, nominal_mass, parse_smiles
from matchms_neims.featurize import Featurizer, ecfp_bits, neims_count_fingerprint, student_fingerprint


def test_fingerprint_sizes_and_counts():
    mol = parse_smiles("CCCCCCCC")  # octane: many repeated environments -> counts above 1
    counts = neims_count_fingerprint(mol)
    assert counts.shape == (4096,) and counts.dtype == np.float32 and counts.max() > 1
    bits = ecfp_bits(mol)
    assert set(np.unique(bits)) <= {0.0, 1.0}
    np.testing.assert_array_equal(bits > 0, counts > 0)  # same folding, bits vs counts
    student = student_fingerprint(mol)
    assert student.shape == (6144,)
    np.testing.assert_array_equal(student[:4096], bits)


def test_graph_features():
    graph = Featurizer(kind="graph")("c1ccccc1O").features
    assert graph.x.shape == (7, 9)  # heavy atoms x categorical atom features
    assert graph.edge_index.shape == (2, 14)  # 7 bonds, both directions
    assert graph.edge_attr.shape == (14, 3)


def test_featurizer_errors_name_the_record():
    featurizer = Featurizer(max_mz=500)
    with pytest.raises(MoleculeError, match=r"^row 7: unparsable SMILES"):
        featurizer("C1CC", record="row 7")
    with pytest.raises(MoleculeError, match="above the model's range 0..500"):
        featurizer("C" * 40)
    with pytest.raises(MoleculeError, match="wildcard"):
        featurizer("*CC")
    with pytest.raises(MoleculeError, match="no SMILES"):
        featurizer("")
    with pytest.raises(ValueError, match="unknown feature kind"):
        Featurizer(kind="maccs")


def test_molecule_identity():
    info = describe(parse_smiles("OCC"))
    assert info.smiles == "CCO" and info.formula == "C2H6O" and info.nominal_mass == 46
    assert info.inchikey == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N" and inchikey_block(info.inchikey) == "LFQSCWFLJHTTHZ"
    assert abs(info.exact_mass - 46.0419) < 1e-3
    # nominal mass uses the most abundant isotope per element and respects labels
    assert nominal_mass(parse_smiles("BrC(Br)(Br)Br")) == 328  # CBr4 with 79Br
    assert nominal_mass(parse_smiles("[2H]C([2H])([2H])O")) == 35
    # salts are reduced to the largest organic fragment
    assert describe(parse_smiles("C[NH3+].[Cl-]")).smiles == "CN"  # and neutralised: the free base
    assert describe(parse_smiles("O=[N+]([O-])c1ccccc1")).smiles == "O=[N+]([O-])c1ccccc1"
