"""The unit-resolution weighted cosine of ``search``, as a matchms similarity (``calculate_scores``, Pipeline).

:class:`NeimsCosine` scores with the kernel of :mod:`matchms_neims.search`
(:class:`~matchms_neims.search.SpectralMatrix`: peaks binned to integer m/z, base peak 1, weighted
``mz**mz_power * intensity**intensity_power``, L2-normalised), with the same defaults, so ``search``, the Python API
and a matchms Pipeline give one pair the same score. Like ``CosineGreedy`` it returns ``score`` and ``matches``
(peaks at the same nominal m/z). On spectra with integer m/z it equals
``CosineGreedy(tolerance=0.5, mz_power=1.0, intensity_power=0.5)``; CosineGreedy's own defaults are
``mz_power=0.0, intensity_power=1.0``.

Its :meth:`NeimsCosine.matrix` is one matrix product over the binned spectra, as fast as ``search``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matchms import Spectrum
from matchms.similarity.BaseSimilarity import BaseSimilarity

from matchms_neims.io import SpectrumRecord
from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER
from matchms_neims.spectral_matrix import SEARCH_MAX_MZ, SpectralMatrix


class NeimsCosine(BaseSimilarity):
    """Weighted cosine of unit-resolution spectra (see the module docstring).

    Parameters
    ----------
    mz_power, intensity_power
        Peak weighting ``mz**mz_power * intensity**intensity_power`` (defaults: those of ``search``, 1.0 and 0.5).
    max_mz
        Highest nominal m/z compared (default 1000, that of ``search``); peaks above it are not compared.
    """

    is_commutative = True
    score_datatype = [("score", np.float64), ("matches", np.int64)]

    def __init__(self, mz_power: float = NEIMS_MZ_POWER, intensity_power: float = NEIMS_INTENSITY_POWER,
                 max_mz: int = SEARCH_MAX_MZ):
        self.mz_power = float(mz_power)
        self.intensity_power = float(intensity_power)
        self.max_mz = int(max_mz)

    def _matrix_of(self, spectra: Sequence[Spectrum | SpectrumRecord]) -> SpectralMatrix:
        return SpectralMatrix.from_records(spectra, self.max_mz, self.mz_power, self.intensity_power)

    def pair(self, reference: Spectrum | SpectrumRecord, query: Spectrum | SpectrumRecord) -> np.ndarray:
        """Score and matched peaks of one pair, as a structured array of :attr:`score_datatype` (the entry of
        :meth:`matrix`, so one pair scores the same either way)."""
        return np.asarray(self.matrix([reference], [query])[0, 0], dtype=self.score_datatype)

    def matrix(self, references: Sequence[Spectrum], queries: Sequence[Spectrum], array_type: str = "numpy",
               is_symmetric: bool = False, progress_bar: bool = False):
        """Scores of every reference (rows) against every query (columns) by one matrix product.

        Parameters
        ----------
        references, queries
            matchms spectra (or :class:`~matchms_neims.io.SpectrumRecord` objects).
        array_type
            ``"numpy"``: a dense structured array; ``"sparse"``: a ``sparsestack.StackedSparseArray`` of the
            pairs with a score above 0 (what matchms's ``calculate_scores`` asks for).
        is_symmetric
            ``references`` and ``queries`` are the same list (the product is computed once either way).
        progress_bar
            Accepted for matchms's signature; one matrix product needs no bar.
        """
        if is_symmetric and len(references) != len(queries):
            raise ValueError(f"is_symmetric with {len(references)} references and {len(queries)} queries")
        library = self._matrix_of(references)
        asked = library if is_symmetric else self._matrix_of(queries)
        # float32 products, as search's (scores within about 1e-7 of float64; matched-peak counts exact), over the
        # m/z columns any spectrum occupies only
        columns = np.flatnonzero(library.peaks.any(axis=0) & asked.peaks.any(axis=0))
        scores = library.vectors[:, columns] @ asked.vectors[:, columns].T
        matches = library.peaks[:, columns].astype(np.float32) @ asked.peaks[:, columns].astype(np.float32).T
        result = np.empty(scores.shape, dtype=self.score_datatype)  # every field written below
        result["score"] = np.clip(scores, 0.0, 1.0, out=scores)
        result["matches"] = matches  # whole numbers, exact in float32 (at most max_mz + 1)
        if array_type == "numpy":
            return result
        if array_type == "sparse":
            from sparsestack import StackedSparseArray

            rows, cols = np.nonzero(scores > 0)
            stacked = StackedSparseArray(*scores.shape)
            stacked.add_sparse_data(rows, cols, result[rows, cols], "")
            return stacked
        raise ValueError(f"array_type must be 'numpy' or 'sparse', got {array_type!r}")

    def to_dict(self) -> dict:
        return {"__Similarity__": type(self).__name__, "mz_power": self.mz_power,
                "intensity_power": self.intensity_power, "max_mz": self.max_mz}


def register_matchms_similarity() -> None:
    """Make :class:`NeimsCosine` known to matchms Pipeline YAML files as ``neimscosine`` (idempotent).

    matchms looks score computations up by lower-cased class name in ``matchms.Pipeline._score_functions``, built
    from ``matchms.similarity`` when matchms is imported; it has no plugin hook (matchms#626), so the entry is added.
    """
    import importlib

    pipeline_module = importlib.import_module("matchms.Pipeline")  # the module (matchms.Pipeline is also the class)
    pipeline_module._score_functions.setdefault(NeimsCosine.__name__.lower(), NeimsCosine)
