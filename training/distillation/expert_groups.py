"""Chemical groups of molecules that seed the student's expert routing (aromatic, aliphatic, heterocyclic, general)."""

from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

#: Group names in the order of their index (and of the expert each group initially routes to).
EXPERT_GROUPS = ("aromatic", "aliphatic", "heterocyclic", "general")


def molecule_group(mol: Chem.Mol, max_aliphatic_heteroatom_fraction: float = 0.25) -> int:
    """Index into :data:`EXPERT_GROUPS` from RDKit ring and aromaticity descriptors.

    * heterocyclic: at least one ring containing a heteroatom;
    * aromatic: an aromatic ring and no heterocycle;
    * aliphatic: no aromatic ring or heterocycle, and at most ``max_aliphatic_heteroatom_fraction`` of
      the heavy atoms are not carbon (hydrocarbons, fatty acids, alcohols, ketones, ...);
    * general: the rest (small polyfunctional, halogenated, inorganic and organometallic compounds).

    On the MassBank training split this gives 1,878 aromatic, 1,775 aliphatic, 1,803 heterocyclic and
    641 general molecules.
    """
    if rdMolDescriptors.CalcNumHeterocycles(mol) > 0:
        return EXPERT_GROUPS.index("heterocyclic")
    if rdMolDescriptors.CalcNumAromaticRings(mol) > 0:
        return EXPERT_GROUPS.index("aromatic")
    heavy = max(1, mol.GetNumHeavyAtoms())
    hetero = sum(atom.GetAtomicNum() != 6 for atom in mol.GetAtoms() if atom.GetAtomicNum() > 1)
    if hetero / heavy <= max_aliphatic_heteroatom_fraction:
        return EXPERT_GROUPS.index("aliphatic")
    return EXPERT_GROUPS.index("general")


def initialise_gate(gate: torch.nn.Module, fingerprints: torch.Tensor, groups: np.ndarray, n_experts: int,
                    steps: int = 300, batch_size: int = 256, lr: float = 1e-3, seed: int = 0) -> float:
    """Fit the gate to route each molecule to its group's expert (group ``g`` -> expert ``g % n_experts``).

    A short cross-entropy fit of the gate alone, so training starts with experts specialised by
    chemistry instead of at random. Returns the final routing accuracy on ``fingerprints``.

    Parameters
    ----------
    gate
        Module mapping (already transformed) fingerprints to ``n_experts`` logits.
    fingerprints
        Gate inputs of the training molecules, shape ``(n, input_size)``.
    groups
        :func:`molecule_group` of each molecule.
    """
    targets = torch.as_tensor(np.asarray(groups) % n_experts, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(gate.parameters(), lr=lr)
    was_training = gate.training
    gate.train()
    for _ in range(steps):
        rows = torch.randint(0, len(targets), (min(batch_size, len(targets)),), generator=generator)
        loss = torch.nn.functional.cross_entropy(gate(fingerprints[rows]), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gate.train(was_training)
    with torch.no_grad():
        return float((gate(fingerprints).argmax(-1) == targets).float().mean())
