"""Subformulae of a molecular formula and their exact unit-resolution isotope envelopes.

An EI fragment ion is a subformula of the molecular formula. This module enumerates those subformulae
and renders, for each, the distribution of its ion over unit m/z, from the isotope abundances of
pyteomics (``pyteomics.mass.nist_mass``); nothing here is typed by hand. The formula head
(:class:`matchms_neims.models.formula_head.FormulaHead`) scores the subformulae and sums their envelopes.

Formulas are count vectors over :data:`FORMULA_SYMBOLS` followed by one column counting atoms of any
other element (:func:`formula_counts`). Isotope-labelled atoms (``[2H]``, ``[13C]``, ...) are symbols
of their own, with all their mass at their label's mass number.

Bounds (RASSP-like, Zhu & Jonas 2023):

* every non-hydrogen symbol takes each count from 0 to the molecule's count, and at least one
  non-hydrogen atom is kept;
* hydrogen is free to vary from 0 to ``n_H + extra_hydrogens`` (hydrogen transfer and self-protonation
  give ions with more hydrogens than the molecule's formula, e.g. McLafferty + 1 or [M+H]+), and never
  above the valence bound ``3 + sum_e n_e (v_e - 2)`` (the hydrogens of a saturated acyclic ion,
  including the even-electron [CH5]+-like case) with the valences of :data:`VALENCES`;
* optionally (``loss_slack``, an integer), the neutral loss -- the molecule minus the subformula -- obeys
  the same valence bound plus ``loss_slack`` hydrogens: its hydrogens are at most
  ``3 + loss_slack + sum_e l_e (v_e - 2)`` over its non-H atoms ``l_e``. An ion and the neutral(s) it lost
  together make up the molecule, so a large fragment cannot have lost more hydrogens than its small
  complement can carry (``loss_slack = 2`` leaves room for two closed-shell neutrals, such as H2O then
  CH4). This lower bound on the hydrogens of large fragments removes about a quarter of the subformulae of
  a typical molecule (median 620 -> 461 on MassBank) and nearly halves the molecules over the bound;
* a formula with more than ``max_subformulae`` subformulae (or more than :data:`MAX_HEAVY_COMBINATIONS`
  non-H count combinations, refused before any is built), with atoms outside :data:`FORMULA_SYMBOLS`, or
  without a non-H atom, is not enumerated: :class:`SubformulaLimit` says why, and the formula head then
  falls back to nominal-mass candidates (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from pyteomics.mass import nist_mass
from rdkit import Chem

#: Symbols of a formula count vector; labelled isotopes are written as in SMILES.
FORMULA_SYMBOLS = ("C", "H", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I", "B", "Se", "As", "Ge", "Sn",
                   "[2H]", "[13C]", "[15N]", "[18O]")
#: Length of a :func:`formula_counts` vector: one column per symbol and one for atoms of other elements.
FORMULA_SIZE = len(FORMULA_SYMBOLS) + 1
HYDROGEN = FORMULA_SYMBOLS.index("H")
#: Valences bounding the hydrogens of a subformula (labelled atoms take their element's).
VALENCES = {"C": 4, "H": 1, "N": 3, "O": 2, "F": 1, "Si": 4, "P": 3, "S": 2, "Cl": 1, "Br": 1, "I": 1, "B": 3,
            "Se": 2, "As": 3, "Ge": 4, "Sn": 4}
#: Length of an isotope envelope: offsets 0..ENVELOPE_SIZE-1 above the subformula's lightest mass.
ENVELOPE_SIZE = 24
#: Isotopologue probabilities below this are left out of the envelopes (before the final renormalisation).
ENVELOPE_FLOOR = 1e-9
#: Default bound on the subformulae of one molecule.
MAX_SUBFORMULAE = 8192
#: Formulas with more non-H count combinations than this are refused before any is built (memory).
MAX_HEAVY_COMBINATIONS = 262_144


def _element(symbol: str) -> str:
    return symbol.strip("[]").lstrip("0123456789")


def _label(symbol: str) -> int | None:
    digits = symbol.strip("[]")[: len(symbol.strip("[]")) - len(_element(symbol))]
    return int(digits) if digits else None


VALENCE_VECTOR = np.array([VALENCES[_element(symbol)] for symbol in FORMULA_SYMBOLS], dtype=np.int64)


@cache
def isotope_distribution(symbol: str) -> tuple[int, np.ndarray]:
    """Lightest mass number of ``symbol`` and its abundances at offsets 0, 1, ... above it (pyteomics).

    A labelled symbol such as ``[13C]`` has all its abundance at its mass number.
    """
    label = _label(symbol)
    if label is not None:
        return label, np.ones(1)
    isotopes = {number: abundance for number, (_, abundance) in nist_mass[_element(symbol)].items()
                if number > 0 and abundance > 0}
    lightest = min(isotopes)
    distribution = np.zeros(max(isotopes) - lightest + 1)
    for number, abundance in isotopes.items():
        distribution[number - lightest] = abundance
    return lightest, distribution / distribution.sum()


LIGHT_MASS_VECTOR = np.array([isotope_distribution(symbol)[0] for symbol in FORMULA_SYMBOLS], dtype=np.int64)


@cache
def _power_table(symbol: str, max_count: int) -> np.ndarray:
    """Row ``n``: the offset distribution of ``n`` atoms of ``symbol`` (``n`` = 0..max_count), ENVELOPE_SIZE long.

    Computed by repeated convolution; mass beyond the envelope and probabilities below
    :data:`ENVELOPE_FLOOR` are dropped here (so that convolutions stop at the last peak that matters) and the
    final renormalisation of :func:`isotope_envelopes` restores the sum.
    """
    _, single = isotope_distribution(symbol)
    table = np.zeros((max_count + 1, ENVELOPE_SIZE))
    table[0, 0] = 1.0
    for n in range(1, max_count + 1):
        table[n] = np.convolve(table[n - 1], single)[:ENVELOPE_SIZE]
    table[table < ENVELOPE_FLOOR] = 0.0
    return table


def formula_counts(mol: Chem.Mol) -> np.ndarray:
    """Count vector (length :data:`FORMULA_SIZE`, int64) of a molecule, implicit hydrogens included.

    The last column counts atoms of elements (or labels) outside :data:`FORMULA_SYMBOLS`.
    """
    counts = np.zeros(FORMULA_SIZE, dtype=np.int64)
    index = {symbol: i for i, symbol in enumerate(FORMULA_SYMBOLS)}
    for atom in mol.GetAtoms():
        symbol = atom.GetSymbol()
        if atom.GetIsotope():
            symbol = f"[{atom.GetIsotope()}{symbol}]"
        counts[index.get(symbol, FORMULA_SIZE - 1)] += 1
        counts[HYDROGEN] += atom.GetTotalNumHs()
    return counts


def formula_string(counts: np.ndarray) -> str:
    """A readable formula of a count vector (symbols in :data:`FORMULA_SYMBOLS` order; 'X' for other atoms)."""
    parts = [f"{symbol}{n if n > 1 else ''}" for symbol, n in zip(FORMULA_SYMBOLS, counts[:-1]) if n]
    if len(counts) > len(FORMULA_SYMBOLS) and counts[-1]:
        parts.append(f"X{counts[-1]}")
    return "".join(parts)


def hydrogen_bound(counts: np.ndarray) -> np.ndarray:
    """Valence bound on the hydrogens of subformulae ``counts`` (rows): ``3 + sum_e n_e (v_e - 2)`` over non-H."""
    counts = np.atleast_2d(counts)[:, : len(FORMULA_SYMBOLS)]
    heavy = np.delete(counts, HYDROGEN, axis=1)
    return 3 + heavy @ np.delete(VALENCE_VECTOR - 2, HYDROGEN)


class SubformulaLimit(ValueError):
    """A formula whose subformulae are not enumerated (too many, or atoms without an isotope table)."""


def count_subformulae(counts: np.ndarray, extra_hydrogens: int = 1, loss_slack: int | None = None) -> int:
    """How many subformulae :func:`enumerate_subformulae` gives for ``counts``, without building them.

    Raises
    ------
    SubformulaLimit
        When the formula has more than :data:`MAX_HEAVY_COMBINATIONS` non-hydrogen count combinations.
    """
    return int(_heavy_grid(counts, extra_hydrogens, loss_slack)[1].sum())


def _heavy_grid(counts: np.ndarray, extra_hydrogens: int = 1, loss_slack: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All non-H count combinations (with at least one atom) and, per combination, its number of H choices
    and its fewest hydrogens."""
    counts = np.asarray(counts, dtype=np.int64)[: len(FORMULA_SYMBOLS)]
    present = [i for i in np.flatnonzero(counts) if i != HYDROGEN]
    if not present:
        empty = np.zeros(0, np.int64)
        return np.zeros((0, len(FORMULA_SYMBOLS)), np.int64), empty, empty
    n_combinations = int(np.prod([float(counts[i] + 1) for i in present]))
    if n_combinations > MAX_HEAVY_COMBINATIONS:
        raise SubformulaLimit(f"{formula_string(counts)} has {n_combinations:,} non-hydrogen count combinations, "
                              f"more than {MAX_HEAVY_COMBINATIONS:,}")
    axes = [np.arange(counts[i] + 1, dtype=np.int32) for i in present]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(present))
    grid = grid[grid.sum(axis=1) > 0]
    heavy = np.zeros((len(grid), len(FORMULA_SYMBOLS)), np.int32)
    heavy[:, present] = grid
    most = np.minimum(counts[HYDROGEN] + extra_hydrogens, hydrogen_bound(heavy))
    fewest = np.zeros_like(most)
    if loss_slack is not None:  # the neutral loss's hydrogens within its own valence bound (module docstring)
        fewest = np.maximum(counts[HYDROGEN] - hydrogen_bound(counts[None, :] - heavy) - loss_slack, 0)
    n_hydrogen = np.maximum(most - fewest + 1, 0)
    keep = n_hydrogen > 0
    return heavy[keep], n_hydrogen[keep], fewest[keep]


def _convolve_symbol(envelopes: np.ndarray, symbol: str, counts: np.ndarray) -> np.ndarray:
    """``envelopes`` (rows) convolved with the offset distribution of ``counts`` atoms of ``symbol`` (per row)."""
    if len(isotope_distribution(symbol)[1]) == 1 or not counts.any():
        return envelopes
    factor = _power_table(symbol, int(max(8, 2 ** int(np.ceil(np.log2(counts.max() + 1))))))[counts]
    width = int(np.flatnonzero(factor.any(axis=0)).max()) + 1
    result = np.zeros_like(envelopes)
    for shift in range(width):
        result[:, shift:] += factor[:, shift : shift + 1] * envelopes[:, : ENVELOPE_SIZE - shift]
    return result


def isotope_envelopes(counts: np.ndarray) -> np.ndarray:
    """Unit-resolution isotope envelopes of subformulae ``counts`` (rows; shape ``(n, ENVELOPE_SIZE)``).

    Column ``k`` is the probability of the ion at its lightest mass + ``k``; each row sums to 1.
    Computed per element from pyteomics' abundances (exact multinomial convolution up to the envelope size).
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=np.int64))[:, : len(FORMULA_SYMBOLS)]
    envelopes = np.zeros((len(counts), ENVELOPE_SIZE))
    envelopes[:, 0] = 1.0
    for column, symbol in enumerate(FORMULA_SYMBOLS):
        envelopes = _convolve_symbol(envelopes, symbol, counts[:, column])
    return _normalized(envelopes)


def _normalized(envelopes: np.ndarray) -> np.ndarray:
    return (envelopes / envelopes.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Subformulae:
    """The subformulae of one formula: counts, lightest (all-lightest-isotope) masses and isotope envelopes."""

    counts: np.ndarray  # (n, len(FORMULA_SYMBOLS)) int16
    light_mass: np.ndarray  # (n,) int64: mass number sum with every atom's lightest isotope
    envelopes: np.ndarray  # (n, ENVELOPE_SIZE) float32, rows sum to 1

    def __len__(self) -> int:
        return len(self.counts)


def enumerate_subformulae(counts: np.ndarray, max_subformulae: int = MAX_SUBFORMULAE,
                          extra_hydrogens: int = 1, loss_slack: int | None = None) -> Subformulae:
    """Every subformula of ``counts`` within the module's bounds, with its isotope envelope.

    Raises
    ------
    SubformulaLimit
        When the formula has atoms outside :data:`FORMULA_SYMBOLS`, more than ``max_subformulae``
        subformulae, or none (no non-hydrogen atom, e.g. H2).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) > len(FORMULA_SYMBOLS) and counts[len(FORMULA_SYMBOLS)]:
        raise SubformulaLimit(f"{formula_string(counts)}: {counts[-1]} atom(s) of elements without an isotope "
                              f"table here (known: {', '.join(FORMULA_SYMBOLS)})")
    heavy, n_hydrogen, fewest = _heavy_grid(counts, extra_hydrogens, loss_slack)
    total = int(n_hydrogen.sum())
    if total == 0:
        raise SubformulaLimit(f"{formula_string(counts)} has no subformula with a non-hydrogen atom")
    if total > max_subformulae:
        raise SubformulaLimit(f"{formula_string(counts)} has {total:,} subformulae, more than the bound "
                              f"{max_subformulae:,}")
    rows = np.repeat(heavy, n_hydrogen, axis=0)
    starts = np.repeat(np.cumsum(n_hydrogen) - n_hydrogen, n_hydrogen)
    rows[:, HYDROGEN] = np.arange(total) - starts + np.repeat(fewest, n_hydrogen)
    # the non-H envelope once per non-H combination, then each hydrogen count convolved in (same result as
    # isotope_envelopes(rows), about 10x faster for large formulas)
    heavy_envelopes = np.zeros((len(heavy), ENVELOPE_SIZE))
    heavy_envelopes[:, 0] = 1.0
    for column, symbol in enumerate(FORMULA_SYMBOLS):
        if column != HYDROGEN:
            heavy_envelopes = _convolve_symbol(heavy_envelopes, symbol, heavy[:, column])
    envelopes = _convolve_symbol(np.repeat(heavy_envelopes, n_hydrogen, axis=0), "H", rows[:, HYDROGEN])
    return Subformulae(counts=rows.astype(np.int16), light_mass=rows @ LIGHT_MASS_VECTOR,
                       envelopes=_normalized(envelopes))
