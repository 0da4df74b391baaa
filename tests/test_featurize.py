"""Molecular features shared by the models, and chemistry helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("smiles", ["CCCCCCCC", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "[2H]C([2H])([2H])O", "C",
                                    "ClC(Cl)(Cl)C(c1ccc(Cl)cc1)c1ccc(Cl)cc1", "C" * 40])
def test_student_fingerprint_equals_the_folded_generator_fingerprints(smiles):
    """One unfolded count fingerprint folded twice gives exactly RDKit's folded bits and counts."""
    mol = parse_smiles(smiles)
    for n_bits, n_count_bits in ((4096, 2048), (512, 256), (1000, 300)):
        expected = np.concatenate([ecfp_bits(mol, n_bits), neims_count_fingerprint(mol, n_count_bits)])
        np.testing.assert_array_equal(student_fingerprint(mol, n_bits, n_count_bits), expected)


def test_graph_features():
    graph = Featurizer(kind="graph")("c1ccccc1O").features
    assert graph.x.shape == (7, 10)  # heavy atoms x (9 categorical atom features + isotope shift)
    assert graph.edge_index.shape == (2, 14)  # 7 bonds, both directions
    assert graph.edge_attr.shape == (14, 3)
    assert graph.x[:, -1].sum() == 0


def test_isotope_labels_are_visible_in_the_graph():
    graph = Featurizer(kind="graph")("[13CH3]C([2H])([2H])O").features
    assert graph.x[:, -1].tolist() == [1, 0, 1, 1, 0]  # 13C and both 2H atoms, shifted by one mass unit


def test_graph_ecfp_batches_into_teacher_inputs():
    featurizer = Featurizer(kind="graph_ecfp", n_bits=512)
    items = [featurizer(smi).features for smi in ("CCO", "c1ccccc1O", "CC(=O)O")]
    graph, ecfp = featurizer.collate(items)
    assert ecfp.shape == (3, 512) and graph.num_graphs == 3
    np.testing.assert_array_equal(ecfp[1].numpy(), ecfp_bits(parse_smiles("c1ccccc1O"), 512))
    counts = Featurizer(kind="graph_ecfp_counts", n_bits=512)("CCCCCCCC").features.ecfp
    np.testing.assert_array_equal(counts[0].numpy(), neims_count_fingerprint(parse_smiles("CCCCCCCC"), 512))
    assert counts.max() > 1  # counts keep how often a substructure occurs
    (fingerprints,) = Featurizer(n_bits=512).collate([np.ones(512), np.zeros(512)])
    assert fingerprints.shape == (2, 512) and fingerprints.dtype == torch.float32


def test_graph_outside_the_feature_categories_is_a_molecule_error():
    with pytest.raises(MoleculeError, match="^bad: cannot build the molecular graph"):
        Featurizer(kind="graph")("C[C+9]C", record="bad")


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
    assert nominal_mass(parse_smiles("[13CH3][18OH]")) == 35 and nominal_mass(parse_smiles("C[N+](C)(C)C")) == 74
    assert nominal_mass(parse_smiles("c1ccccc1[125I]")) == 202 and nominal_mass(parse_smiles("[Xe]")) == 132
    # salts are reduced to the largest organic fragment
    assert describe(parse_smiles("C[NH3+].[Cl-]")).smiles == "CN"  # and neutralised: the free base
    assert describe(parse_smiles("O=[N+]([O-])c1ccccc1")).smiles == "O=[N+]([O-])c1ccccc1"


def test_featurizer_pool_returns_what_this_process_computes():
    from matchms_neims.featurize_pool import FeaturizerPool, featurize_chunk
    from matchms_neims.predictor import MoleculeInput

    molecules = [MoleculeInput(smiles, "", f"record {index}") for index, smiles in
                 enumerate(["CCO", "C1", "c1ccccc1O", "[13CH3]C(=O)C", "C" * 40, "CC(=O)Nc1ccc(O)cc1"])]
    chunks = [molecules[:2], molecules[2:5], molecules[5:]]
    for kind in ("student_fingerprint", "graph_ecfp"):  # compact fingerprints and pickled graphs
        featurizer = Featurizer(kind=kind)
        pool = FeaturizerPool(featurizer, 1)
        try:
            pooled = list(pool.imap(chunks))
        finally:
            pool.close()
        for (positions, featurized, errors), chunk in zip(pooled, chunks):
            expected_positions, expected, expected_errors = featurize_chunk(featurizer, chunk)
            assert positions == expected_positions and [str(e) for e in errors] == [str(e) for e in expected_errors]
            for got, want in zip(featurized, expected):
                assert got.info == want.info
                if kind == "graph_ecfp":
                    assert torch.equal(got.features.x, want.features.x) and torch.equal(got.features.ecfp,
                                                                                        want.features.ecfp)
                else:
                    np.testing.assert_array_equal(got.features, want.features)
