"""Subformula enumeration, its bounds, and exact isotope envelopes against known patterns."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from matchms_neims.subformulae import (
    ENVELOPE_SIZE,
    FORMULA_SYMBOLS,
    HYDROGEN,
    SubformulaLimit,
    count_subformulae,
    enumerate_subformulae,
    formula_counts,
    formula_string,
    isotope_envelopes,
)


def counts_of(smiles: str) -> np.ndarray:
    return formula_counts(Chem.MolFromSmiles(smiles))


def envelope_of(smiles: str) -> np.ndarray:
    """The molecular ion's envelope, scaled to its largest peak."""
    envelope = isotope_envelopes(counts_of(smiles)[None])[0]
    return envelope / envelope.max()


def test_formula_counts_include_implicit_hydrogens_labels_and_other_atoms():
    assert formula_string(counts_of("CCO")) == "C2H6O"
    assert formula_string(counts_of("[2H]C([2H])([2H])Cl")) == "CCl[2H]3"
    assert formula_string(counts_of("C[Hg]C")) == "C2H6X1"


@pytest.mark.parametrize("smiles, expected", [
    # methane CH4: C1 with H 0..min(4 + 1, 3 + 1*2 = 5) -> 6 subformulae (C, CH, ..., CH5)
    ("C", 6),
    # water H2O: O1 with H 0..min(3, 3 + 0) -> 4 (O, OH, OH2, OH3)
    ("O", 4),
    # CCl4: 15 non-H combinations (C0-1 x Cl0-4 minus the empty one), and no hydrogens in the molecule
    ("ClC(Cl)(Cl)Cl", 15),
    # Br2: Br and Br2, each with H 0..min(1, 3 - nBr): Br: 0..1, Br2: 0..1 -> 4
    ("BrBr", 4),
])
def test_subformula_counts_of_known_formulas(smiles, expected):
    counts = counts_of(smiles)
    subformulae = enumerate_subformulae(counts)
    assert len(subformulae) == count_subformulae(counts) == expected
    # every subformula is within the molecule's counts (hydrogen: at most one more) and distinct
    assert (subformulae.counts[:, :HYDROGEN] <= counts[:HYDROGEN]).all()
    assert (subformulae.counts[:, HYDROGEN] <= counts[HYDROGEN] + 1).all()
    assert len({row.tobytes() for row in subformulae.counts}) == len(subformulae)


def test_bounds_keep_the_molecular_ion_and_respect_valence():
    counts = counts_of("CC(=O)Oc1ccccc1C(=O)O")  # aspirin C9H8O4
    subformulae = enumerate_subformulae(counts)
    molecule = counts[: len(FORMULA_SYMBOLS)]
    assert (subformulae.counts == molecule).all(axis=1).any(), "the molecular ion is a candidate"
    assert 180 in subformulae.light_mass  # M+. of aspirin
    # no subformula has more hydrogens than a saturated acyclic ion of its heavy atoms allows (C: 2n + 3)
    carbon_only = subformulae.counts[(subformulae.counts[:, 3] == 0)]  # no oxygen
    assert (carbon_only[:, HYDROGEN] <= 2 * carbon_only[:, 0] + 3).all()
    # every non-H atom combination appears: 10 carbon counts x 5 oxygen counts - the empty one
    heavy = {tuple(row[[0, 3]]) for row in subformulae.counts}
    assert len(heavy) == 10 * 5 - 1


def test_neutral_loss_bound_drops_fragments_that_lost_more_hydrogens_than_their_complement_carries():
    counts = counts_of("CCO")  # ethanol C2H6O
    # loss_slack 0: a fragment with (c, o) non-H atoms keeps at least 6 - (3 + 2 (2 - c)) hydrogens, so
    # C: H1-5, C2: H3-7, O: H0-3, CO: H1-5, C2O: H3-7 -> 5 + 5 + 4 + 5 + 5 = 24 (32 without the loss bound)
    assert count_subformulae(counts) == len(enumerate_subformulae(counts)) == 32
    subformulae = enumerate_subformulae(counts, loss_slack=0)
    assert len(subformulae) == count_subformulae(counts, loss_slack=0) == 24
    assert len({row.tobytes() for row in subformulae.counts}) == 24
    molecule = counts[: len(FORMULA_SYMBOLS)]
    assert (subformulae.counts == molecule).all(axis=1).any(), "the molecular ion stays"
    loss = molecule - subformulae.counts
    loss_carbons = loss[:, 0]
    assert (loss[:, HYDROGEN] <= 3 + 2 * loss_carbons).all(), "every neutral loss within its valence bound"
    # the slack widens the bound, and the envelopes follow the shifted hydrogen counts
    assert count_subformulae(counts, loss_slack=2) == 30
    assert np.allclose(subformulae.envelopes, isotope_envelopes(subformulae.counts.astype(np.int64)), atol=1e-6)
    heavy = enumerate_subformulae(counts_of("CCCCCCCCCCCCCCCCCCCC(=O)OCC(O)CO"), 100_000)
    assert len(enumerate_subformulae(counts_of("CCCCCCCCCCCCCCCCCCCC(=O)OCC(O)CO"), 100_000, loss_slack=2)) \
        < 0.8 * len(heavy)


def test_formulas_beyond_the_bound_or_without_isotope_tables_are_refused_with_a_reason():
    counts = counts_of("CCCCCCCCCCCCCCCCCCCC(=O)OCC(O)CO")
    assert count_subformulae(counts) > 1000
    with pytest.raises(SubformulaLimit, match="more than the bound 1,000"):
        enumerate_subformulae(counts, max_subformulae=1000)
    with pytest.raises(SubformulaLimit, match="without an isotope table"):
        enumerate_subformulae(counts_of("C[Hg]C"))


def test_carbon_tetrachloride_m_m2_m4_cluster():
    # 35Cl/37Cl = 75.76 : 24.24 (pyteomics); CCl4 M : M+2 : M+4 : M+6 is about 78 : 100 : 48 : 10
    envelope = envelope_of("ClC(Cl)(Cl)Cl")
    assert envelope[[0, 2, 4, 6]] == pytest.approx([0.781, 1.0, 0.480, 0.102], abs=0.01)
    assert envelope[1] < 0.02  # only 13C puts intensity at M+1


def test_dibromine_one_two_one():
    envelope = envelope_of("BrBr")
    assert envelope[[0, 2, 4]] == pytest.approx([0.514, 1.0, 0.486], abs=0.005)
    assert envelope[[1, 3]] == pytest.approx([0.0, 0.0], abs=1e-9)


def test_sulfur_and_silicon_compounds():
    # thiophene C4H4S: M+2 about 4.5 % from 34S (4.25 %) and 13C2
    thiophene = envelope_of("c1ccsc1")
    assert thiophene[0] == 1.0
    assert thiophene[1] == pytest.approx(0.052, abs=0.004)
    assert thiophene[2] == pytest.approx(0.046, abs=0.004)
    # tetramethylsilane C4H12Si: M+1 = 29Si 5.1 % + 13C 4 x 1.1 %; M+2 = 30Si 3.4 %
    tms = envelope_of("C[Si](C)(C)C")
    assert tms[1] == pytest.approx(0.0947, abs=0.006)
    assert tms[2] == pytest.approx(0.036, abs=0.004)


def test_envelopes_sum_to_one_so_each_subformula_carries_its_probability():
    subformulae = enumerate_subformulae(counts_of("Clc1ccc(Br)cc1S"))
    assert subformulae.envelopes.shape == (len(subformulae), ENVELOPE_SIZE)
    assert subformulae.envelopes.sum(axis=1) == pytest.approx(np.ones(len(subformulae)), abs=1e-6)
    # weighted by probabilities, the rendered spectrum holds exactly the total probability
    probabilities = np.random.default_rng(0).dirichlet(np.ones(len(subformulae)))
    assert (probabilities[:, None] * subformulae.envelopes).sum() == pytest.approx(1.0, abs=1e-6)


def test_labelled_atoms_are_monoisotopic_at_their_label():
    envelope = isotope_envelopes(counts_of("[13CH4]")[None])[0]
    assert envelope[0] == pytest.approx(1.0, abs=1e-3)  # 2H of the four hydrogens only
    subformulae = enumerate_subformulae(counts_of("[13CH4]"))
    assert 17 in subformulae.light_mass  # 13CH4+.


def test_enumerated_envelopes_equal_the_direct_computation():
    # enumerate_subformulae convolves hydrogen into per-combination envelopes; the result is isotope_envelopes'
    subformulae = enumerate_subformulae(counts_of("CCCCCCCC(=O)OC(CSc1ccc(Cl)cc1)C[Si](C)(C)C"), 100_000)
    np.testing.assert_allclose(subformulae.envelopes, isotope_envelopes(subformulae.counts), atol=1e-6)
