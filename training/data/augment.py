"""Training-time augmentation: 13C labelling with consistently shifted spectra, label smoothing, conformers.

* :func:`label_carbons` + :func:`shift_spectrum_for_labels`: a molecule with 1-2 carbons made 13C and
  its spectrum moved to match. The mass shift comes from RDKit's isotope masses. Which fragments keep
  a labelled carbon is not known without fragment annotations, so each peak at m/z ``m`` of a molecule
  of nominal mass ``M`` is assumed to contain a given labelled carbon with probability ``m / M`` (the
  molecular ion always does); with ``n`` labels the peak is split over ``m .. m + n`` by the binomial
  distribution. Peaks at M+ and above move entirely.
* :func:`smooth_spectra`: label distribution smoothing (Gaussian along m/z) of target spectra.
* :func:`conformer_distances`: mean interatomic distances over a few ETKDG conformers, which give
  bond-length targets to self-supervised pretraining.
"""

from __future__ import annotations

from math import comb
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.ndimage import gaussian_filter1d

from matchms_neims.chemistry import nominal_mass, parse_smiles
from matchms_neims.spectra import normalize_base_peak

if TYPE_CHECKING:
    from matchms_neims_training.config import AugmentConfig

_PERIODIC_TABLE = Chem.GetPeriodicTable()


def isotope_nominal_shift(atomic_number: int = 6, isotope: int = 13) -> int:
    """Nominal mass shift of replacing the most common isotope of an element by ``isotope`` (13C: +1)."""
    common = _PERIODIC_TABLE.GetMostCommonIsotope(atomic_number)
    shift = _PERIODIC_TABLE.GetMassForIsotope(atomic_number, isotope) - _PERIODIC_TABLE.GetMassForIsotope(
        atomic_number, common)
    return int(round(shift))


def label_carbons(mol: Chem.Mol, n_labels: int, rng: np.random.Generator, isotope: int = 13) -> Chem.Mol | None:
    """A copy of ``mol`` with ``n_labels`` randomly chosen unlabelled carbons set to ``isotope``.

    Returns ``None`` when the molecule has fewer unlabelled carbons than ``n_labels``.
    """
    carbons = [atom.GetIdx() for atom in mol.GetAtoms() if atom.GetAtomicNum() == 6 and not atom.GetIsotope()]
    if len(carbons) < n_labels or n_labels < 1:
        return None
    labelled = Chem.RWMol(mol)
    for index in rng.choice(carbons, size=n_labels, replace=False):
        labelled.GetAtomWithIdx(int(index)).SetIsotope(isotope)
    result = labelled.GetMol()
    Chem.SanitizeMol(result)
    return result


def shift_spectrum_for_labels(vector: np.ndarray, molecular_mass: int, n_labels: int, shift: int = 1) -> np.ndarray:
    """Spectrum of the labelled molecule from that of the unlabelled one (see the module docstring).

    Parameters
    ----------
    vector
        Binned spectrum (index = nominal m/z), any scale.
    molecular_mass
        Nominal mass of the unlabelled molecule.
    n_labels
        Number of labelled atoms, each shifting the fragments that contain it by ``shift``.
    shift
        Nominal mass shift per label (:func:`isotope_nominal_shift`).

    Returns
    -------
    numpy.ndarray
        Same length as ``vector``, base peak 1 (intensity moved past the end is dropped).
    """
    n_bins = len(vector)
    mz = np.arange(n_bins)
    p = np.clip(mz / max(molecular_mass, 1), 0.0, 1.0)
    out = np.zeros(n_bins, dtype=np.float64)
    for k in range(n_labels + 1):
        weight = comb(n_labels, k) * p**k * (1 - p) ** (n_labels - k)
        moved = vector * weight
        offset = k * shift
        if offset < n_bins:
            out[offset:] += moved[: n_bins - offset]
    return normalize_base_peak(out).astype(np.float32)


def smooth_spectra(vectors: np.ndarray, sigma: float) -> np.ndarray:
    """Label distribution smoothing: Gaussian filter of width ``sigma`` (m/z) along the last axis, base peak 1."""
    if sigma <= 0:
        return vectors
    return normalize_base_peak(gaussian_filter1d(np.asarray(vectors, dtype=np.float32), sigma, axis=-1,
                                                 mode="constant"))


def conformer_distances(mol: Chem.Mol, n_conformers: int = 3, seed: int = 0) -> np.ndarray | None:
    """Mean interatomic distance matrix (angstrom, heavy atoms and explicit atoms of ``mol``) over ETKDG conformers.

    Returns ``None`` when RDKit cannot embed the molecule.
    """
    with_h = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    conformer_ids = list(AllChem.EmbedMultipleConfs(with_h, numConfs=n_conformers, params=params))
    if not conformer_ids:
        return None
    n_atoms = mol.GetNumAtoms()  # AddHs appends hydrogens, so the original atoms keep their indices
    matrices = [Chem.Get3DDistanceMatrix(with_h, confId=cid)[:n_atoms, :n_atoms] for cid in conformer_ids]
    return np.mean(matrices, axis=0).astype(np.float32)


class SpectrumAugmenter:
    """Applies 13C labelling and LDS to one training sample (molecule + target spectrum).

    Parameters
    ----------
    c13_fraction
        Probability that a sample is labelled.
    max_carbons
        Labels per labelled sample: 1..max_carbons, uniformly.
    lds_sigma
        Gaussian smoothing of every target (0: off).
    """

    def __init__(self, c13_fraction: float = 0.05, max_carbons: int = 2, lds_sigma: float = 0.0):
        self.c13_fraction = c13_fraction
        self.max_carbons = max_carbons
        self.lds_sigma = lds_sigma
        self.shift = isotope_nominal_shift(6, 13)

    @classmethod
    def from_config(cls, augment: AugmentConfig) -> SpectrumAugmenter:
        """The augmenter of a training config's ``augment`` section."""
        return cls(augment.c13_fraction, augment.c13_max_carbons, augment.lds_sigma)

    @property
    def active(self) -> bool:
        return self.c13_fraction > 0 or self.lds_sigma > 0

    def label(self, mol: Chem.Mol | str, vector: np.ndarray, rng: np.random.Generator
              ) -> tuple[Chem.Mol, np.ndarray, int] | None:
        """Maybe label the molecule: ``(labelled mol, shifted spectrum, new nominal mass)`` or ``None``.

        ``mol`` may be a SMILES string; it is parsed only for the samples drawn for labelling.
        """
        if self.c13_fraction <= 0 or rng.random() >= self.c13_fraction:
            return None
        if isinstance(mol, str):
            mol = parse_smiles(mol)
        n_labels = int(rng.integers(1, self.max_carbons + 1))
        labelled = label_carbons(mol, n_labels, rng)
        if labelled is None:
            return None
        mass = nominal_mass(mol)
        new_mass = nominal_mass(labelled)
        if new_mass >= len(vector):
            return None
        return labelled, shift_spectrum_for_labels(vector, mass, n_labels, self.shift), new_mass

    def smooth(self, vector: np.ndarray) -> np.ndarray:
        return smooth_spectra(vector, self.lds_sigma)
