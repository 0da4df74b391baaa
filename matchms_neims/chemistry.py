"""Chemistry with RDKit: parsing and standardising structures, formula, masses and InChIKey."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from rdkit import Chem, RDLogger
from rdkit.Chem import rdMolDescriptors
from rdkit.Chem.MolStandardize import rdMolStandardize

from matchms_neims.problems import RecordProblem

RDLogger.DisableLog("rdApp.*")

_PERIODIC_TABLE = Chem.GetPeriodicTable()
_LARGEST_FRAGMENT = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
_UNCHARGER = rdMolStandardize.Uncharger()
_DUMMY_ATOM = Chem.MolFromSmarts("[#0]")
#: Molecule property in which :func:`parse_smiles` notes what it changed.
STANDARDIZATION_PROP = "neims_standardization"
#: Longest SMILES :func:`parse_smiles` gives to RDKit. The longest in massbank_ei.msp and the NIST 17 list has
#: 231 characters; a linear chain of 20,000 atoms crashes RDKit's canonicalisation (segfault) while 5,000
#: do not, so the bound leaves a 5x margin below the crash and 4x above any molecule of EI's mass range.
MAX_SMILES_LENGTH = 1000
#: Characters of a refused SMILES quoted in its error message (a 200 MB line is not echoed whole).
QUOTED_SMILES_LENGTH = 80


def shortened(text: str, limit: int, quote: bool = False) -> str:
    """``text`` (its ``repr`` with ``quote``), or, when longer than ``limit``, its first ``limit`` characters
    followed by its length, e.g. ``'CCC'... (20,000 characters)``."""
    if len(text) <= limit:
        return repr(text) if quote else text
    start = text[:limit]
    return f"{repr(start) if quote else start}... ({len(text):,} characters)"


def quoted_smiles(text: str) -> str:
    """``repr`` of a SMILES for a message, shortened to :data:`QUOTED_SMILES_LENGTH` characters."""
    return shortened(text, QUOTED_SMILES_LENGTH, quote=True)


class MoleculeError(ValueError):
    """A molecule cannot be used; the message names the record and the reason."""

    def __init__(self, record: str, reason: str):
        self.record = record
        self.reason = reason
        super().__init__(f"{record}: {reason}")

    def __reduce__(self):  # picklable with its two arguments
        return type(self), (self.record, self.reason)

    def problem(self, smiles: str = "") -> RecordProblem:
        """This error as the :class:`~matchms_neims.problems.RecordProblem` of a skipped molecule."""
        return molecule_problem(self.record, self.reason, smiles)


def molecule_problem(record: str, reason: str, smiles: str = "") -> RecordProblem:
    """The :class:`~matchms_neims.problems.RecordProblem` of a skipped molecule; a SMILES longer than
    :data:`MAX_SMILES_LENGTH` is kept shortened (with its length), so that one 200 MB line does not become a 200 MB
    error list."""
    return RecordProblem(record, reason, smiles=shortened(smiles, MAX_SMILES_LENGTH))


@dataclass(frozen=True)
class MoleculeInfo:
    """Identity of a molecule as written into predicted spectra.

    Attributes
    ----------
    smiles
        Canonical isomeric SMILES of the standardised molecule (largest fragment).
    inchikey
        Standard InChIKey (empty when RDKit cannot make an InChI).
    formula
        Molecular formula (Hill order).
    exact_mass
        Monoisotopic mass (Da).
    nominal_mass
        Integer mass from the most abundant isotope of each element: the m/z of M+.
    standardization
        What :func:`parse_smiles` changed, e.g. ``"kept the largest of 2 fragments; neutralised"`` (empty when
        the molecule was used as given).
    """

    smiles: str
    inchikey: str
    formula: str
    exact_mass: float
    nominal_mass: int
    standardization: str = ""


def parse_smiles(smiles: str, record: str = "molecule", keep_largest_fragment: bool = True) -> Chem.Mol:
    """Parse and standardise a SMILES string.

    Salts and mixtures are reduced to their largest organic fragment, which is then neutralised
    where possible (the EI spectrum of a hydrochloride is that of the free base; nitro groups and
    quaternary ammonium ions keep their charges).

    Raises
    ------
    MoleculeError
        For an empty, unparsable or over-long (:data:`MAX_SMILES_LENGTH`) SMILES, wildcard atoms, or a
        molecule without heavy atoms. Over-long SMILES are refused before RDKit sees them.
    """
    if smiles is None or not str(smiles).strip():
        raise MoleculeError(record, "no SMILES given")
    text = str(smiles).strip()
    if len(text) > MAX_SMILES_LENGTH:
        raise MoleculeError(record, f"SMILES {quoted_smiles(text)} is longer than {MAX_SMILES_LENGTH:,} characters, "
                                    "far beyond any molecule in EI's mass range (RDKit can crash on such input)")
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        raise MoleculeError(record, f"unparsable SMILES {quoted_smiles(text)}")
    n_fragments = len(Chem.GetMolFrags(mol)) if "." in text else 1  # "." is the only way to write two fragments
    if keep_largest_fragment and n_fragments > 1:
        largest = _LARGEST_FRAGMENT.choose(mol)
        mol = _UNCHARGER.uncharge(largest)
        changes = [f"kept the largest of {n_fragments} fragments"]
        if Chem.MolToSmiles(mol) != Chem.MolToSmiles(largest):
            changes.append("neutralised")
        mol.SetProp(STANDARDIZATION_PROP, "; ".join(changes))
    if mol.GetNumHeavyAtoms() == 0 and mol.GetNumAtoms() == 0:
        raise MoleculeError(record, f"SMILES {quoted_smiles(text)} has no atoms")
    if mol.HasSubstructMatch(_DUMMY_ATOM):
        raise MoleculeError(record, f"SMILES {quoted_smiles(text)} has wildcard or dummy atoms")
    return mol


#: One element of a formula written by ``CalcMolFormula(mol, separateIsotopes=True)``: ``[13C]``, ``Cl`` + count.
_FORMULA_TOKEN = re.compile(r"(?:\[(\d+)([A-Z][a-z]?)\]|([A-Z][a-z]?))(\d*)")


@cache
def _most_common_isotope(symbol: str) -> int:
    return _PERIODIC_TABLE.GetMostCommonIsotope(_PERIODIC_TABLE.GetAtomicNumber(symbol))


def nominal_mass(mol: Chem.Mol) -> int:
    """Nominal mass: sum of the mass numbers of the most abundant isotope of each atom (labels respected).

    Read from the formula with separated isotopes (one RDKit call instead of a Python loop over the atoms).
    """
    total = 0
    for isotope, _, symbol, count in _FORMULA_TOKEN.findall(
            rdMolDescriptors.CalcMolFormula(mol, True, False)):
        mass_number = int(isotope) if isotope else _most_common_isotope(symbol)
        total += mass_number * (int(count) if count else 1)
    return total


def describe(mol: Chem.Mol) -> MoleculeInfo:
    """Canonical SMILES, InChIKey, formula and masses of a parsed molecule."""
    try:
        inchikey = Chem.MolToInchiKey(mol) or ""
    except Exception:  # noqa: BLE001 - RDKit raises several types for exotic structures
        inchikey = ""
    return MoleculeInfo(
        smiles=Chem.MolToSmiles(mol),
        inchikey=inchikey,
        formula=rdMolDescriptors.CalcMolFormula(mol),
        exact_mass=float(rdMolDescriptors.CalcExactMolWt(mol)),
        nominal_mass=nominal_mass(mol),
        standardization=mol.GetProp(STANDARDIZATION_PROP) if mol.HasProp(STANDARDIZATION_PROP) else "",
    )


def inchikey_block(inchikey: str | None) -> str:
    """First InChIKey block (the connectivity layer), used to say whether two records are the same molecule."""
    return (inchikey or "").strip().split("-")[0].upper()


def element_counts(mol: Chem.Mol) -> dict[str, int]:
    """Element symbol -> atom count, hydrogens included."""
    counts: dict[str, int] = {}
    for atom in mol.GetAtoms():
        counts[atom.GetSymbol()] = counts.get(atom.GetSymbol(), 0) + 1
        if atom.GetTotalNumHs():
            counts["H"] = counts.get("H", 0) + atom.GetTotalNumHs()
    return counts
