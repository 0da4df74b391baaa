"""Molecule-level splits: random, Bemis-Murcko scaffold groups, held-out contributors, or all (the refit)."""

from __future__ import annotations

import numpy as np
from rdkit.Chem.Scaffolds import MurckoScaffold

from matchms_neims.chemistry import MoleculeError, parse_smiles

SPLITS = ("train", "val", "test")


def scaffold_of(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES ('' for acyclic molecules or unparsable SMILES)."""
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=parse_smiles(smiles))
    except (MoleculeError, ValueError, RuntimeError):
        return ""


def contributor_of(spectrum_id: str) -> str:
    """The contributing lab of a MassBank accession (``MSBNK-Fac_Eng_Univ_Tokyo-JP000001`` -> ``Fac_Eng_Univ_Tokyo``).

    Other identifiers give their part before the last ``-`` (or the whole identifier), '' gives ''.
    """
    text = (spectrum_id or "").strip()
    if text.upper().startswith("MSBNK-"):
        text = text[6:]
    return text.rsplit("-", 1)[0] if "-" in text else text


SPLIT_METHODS = ("random", "scaffold", "contributor", "all")


def assign_splits(molecule_keys: list[str], smiles: list[str] | None = None, method: str = "random",
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 42,
                  contributors: list[str] | None = None) -> dict[str, str]:
    """Assign every molecule (InChIKey first block) to ``train``, ``val`` or ``test``.

    Parameters
    ----------
    molecule_keys
        One key per record (several records of one molecule share a key).
    smiles
        SMILES per record, needed for ``method="scaffold"``.
    contributors
        Contributing lab per record (:func:`contributor_of`), needed for ``method="contributor"``.
    method
        ``"random"``: molecules are shuffled with ``seed`` and cut by ``fractions``.
        ``"scaffold"``: molecules are grouped by Bemis-Murcko scaffold, and whole groups are assigned
        (largest groups to training, the rest shuffled), so test scaffolds are unseen in training.
        ``"contributor"``: held-out labs. The test split holds the molecules that the main contributor (the
        one with the most records) never measured, i.e. those measured only by other labs and instruments;
        the main contributor's molecules are shuffled into training and validation in the ratio of
        ``fractions[0]`` to ``fractions[1]`` (``fractions[2]`` is not used: the data fix the test size).
        ``"all"``: every molecule is training data (the refit of a chosen recipe on all cleaned spectra;
        ``fractions`` are not used).
    fractions
        Train, validation and test fractions of molecules.
    seed
        Random seed; the same keys and seed always give the same split.

    Returns
    -------
    dict
        Molecule key -> split name. A molecule is never in two splits.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {fractions} must sum to 1")
    unique_keys = sorted(set(molecule_keys))
    rng = np.random.default_rng(seed)
    n_total = len(unique_keys)
    if method == "random":
        groups = [[key] for key in unique_keys]
        order = rng.permutation(len(groups))
        groups = [groups[i] for i in order]
    elif method == "scaffold":
        if smiles is None:
            raise ValueError("scaffold split needs the SMILES of every record")
        smiles_of_key = {}
        for key, smi in zip(molecule_keys, smiles):
            smiles_of_key.setdefault(key, smi)
        by_scaffold: dict[str, list[str]] = {}
        for key in unique_keys:
            by_scaffold.setdefault(scaffold_of(smiles_of_key[key]), []).append(key)
        big = sorted((g for g in by_scaffold.values() if len(g) > fractions[2] * n_total / 2), key=len, reverse=True)
        small = [g for g in by_scaffold.values() if len(g) <= fractions[2] * n_total / 2]
        order = rng.permutation(len(small))
        groups = big + [small[i] for i in order]
    elif method == "contributor":
        return _contributor_split(molecule_keys, contributors, fractions, rng)
    elif method == "all":
        return {key: "train" for key in unique_keys}
    else:
        raise ValueError(f"unknown split method {method!r}; expected one of {SPLIT_METHODS}")
    limits = (fractions[0] * n_total, (fractions[0] + fractions[1]) * n_total)
    assignment: dict[str, str] = {}
    n_train = n_val = 0
    for group in groups:
        if n_train + len(group) <= limits[0] or n_train == 0:
            name, n_train = "train", n_train + len(group)
        elif n_train + n_val + len(group) <= limits[1]:
            name, n_val = "val", n_val + len(group)
        else:
            name = "test"
        for key in group:
            assignment[key] = name
    return assignment


def _contributor_split(molecule_keys: list[str], contributors: list[str] | None,
                       fractions: tuple[float, float, float], rng: np.random.Generator) -> dict[str, str]:
    if contributors is None or len(contributors) != len(molecule_keys):
        raise ValueError("contributor split needs the contributor of every record")
    counts: dict[str, int] = {}
    for contributor in contributors:
        counts[contributor] = counts.get(contributor, 0) + 1
    main = max(sorted(counts), key=counts.get)
    measured_by_main = {key for key, contributor in zip(molecule_keys, contributors) if contributor == main}
    assignment = {key: "test" for key in set(molecule_keys) - measured_by_main}
    seen = sorted(measured_by_main)
    order = rng.permutation(len(seen))
    n_val = int(round(len(seen) * fractions[1] / max(fractions[0] + fractions[1], 1e-12)))
    for position, i in enumerate(order):
        assignment[seen[i]] = "val" if position < n_val else "train"
    return assignment


