"""What the MSP and MGF writers share: one-line metadata text and the integer peak lines.
"""

from __future__ import annotations

import re

import numpy as np

SKIPPED_KEYS = {"num_peaks", "peak_comments", "synonyms"}
#: Characters that would end or corrupt a metadata line when written raw: C0 controls (NUL, CR, LF, tab, ...),
#: DEL, and the separators Python's ``str.splitlines`` also breaks at (NEL, U+2028, U+2029).
LINE_BREAKING = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line_text(value) -> str:
    """A metadata value as one line of text: each line-breaking or control character becomes a space, so the
    file reads back with the same records (a name ``"benz\\r41 999\\rene"`` would otherwise add a peak line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):  # e.g. a predicted spectrum's expert_weights: comma-separated values
        return ",".join(one_line_text(item) for item in value)
    return LINE_BREAKING.sub(" ", str(value))


class _IntegerText:
    """Text of non-negative integers from lookup tables, grown on demand: the peak lines of unit-resolution spectra
    (integer m/z, intensities 0..999) without one number conversion per value."""

    def __init__(self, size: int = 1001):
        self._text: list[str] = []
        self._spaced: list[str] = []  # "12 ": an m/z and the space after it
        self._grow(size - 1)

    def _grow(self, largest: int) -> None:
        numbers = range(len(self._text), largest + 1)
        self._text.extend(str(i) for i in numbers)
        self._spaced.extend(f"{i} " for i in numbers)

    def peak_lines(self, mz: list[int], intensities: list[int]) -> str | None:
        """The lines of non-negative integer peaks; ``None`` for other values (floats, or above the tables' limit)."""
        try:
            spaced, text = self._spaced, self._text
            return "\n".join([spaced[m] + text[i] for m, i in zip(mz, intensities)]) + "\n"
        except TypeError:  # not integers
            return None
        except IndexError:
            largest = max(max(mz), max(intensities))
            if largest > _INTEGER_TEXT_LIMIT:
                return None
            self._grow(largest)
            return self.peak_lines(mz, intensities)


_INTEGER_TEXT = _IntegerText()
_INTEGER_TEXT_LIMIT = 100_000  # larger integers (raw intensities) are converted one by one, not tabled


def integral(values: np.ndarray) -> bool:
    return bool(values.size) and bool(np.all(values == np.round(values)))


def peak_lines(mz, intensities) -> str:
    """The peak lines of a record, each ending with a newline: integers as integers (unit resolution, the
    library's 0..999 intensities), other m/z with 4 decimals and other intensities with 4 significant digits.

    Lists of non-negative Python integers (what the library builder writes) go straight to the lookup tables,
    without a conversion to arrays (which took twice as long for the 22,870 NIST 17 predictions).
    """
    if type(mz) is list and type(intensities) is list and mz and min(mz) >= 0 and min(intensities) >= 0:
        tabled = _INTEGER_TEXT.peak_lines(mz, intensities)
        if tabled is not None:
            return tabled
    mz, intensities = np.asarray(mz), np.asarray(intensities)
    mz_integral, intensities_integral = integral(mz), integral(intensities)
    if mz_integral and intensities_integral and min(mz.min(), intensities.min()) >= 0:
        tabled = _INTEGER_TEXT.peak_lines(mz.astype(np.int64).tolist(), intensities.astype(np.int64).tolist())
        if tabled is not None:
            return tabled
    mz_text = [str(int(v)) for v in mz] if mz_integral else [f"{v:.4f}" for v in mz]
    int_text = [str(int(v)) for v in intensities] if intensities_integral else [f"{v:.4g}" for v in intensities]
    return "".join([f"{m} {i}\n" for m, i in zip(mz_text, int_text)])
