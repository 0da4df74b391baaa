"""Skipped inputs: one problem type for molecules and spectra, one log cap, one TSV writer and reader.

Whatever a reader, the featuriser, the predictor or the library builder skips (an unreadable spectrum record, an
unparsable SMILES, a molecule above the model's m/z range, a duplicate) is a :class:`RecordProblem`: the record's
name and the reason, plus where it was found (file and line, for records read from spectrum files) or what it was
(the SMILES, for molecules). :class:`ProblemLog` logs the first :data:`MAX_LOGGED_PROBLEMS` of a run one by one and
counts the rest in one line; :func:`write_problems` and :func:`read_problems` are the TSV lists (``--errors``).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matchms_neims.utils import atomic_output

logger = logging.getLogger(__name__)

#: Skipped inputs logged one by one (records per file, molecules per batch, pretraining molecules, decoys); the rest
#: are counted in one line. The one cap of the package and of training.
MAX_LOGGED_PROBLEMS = 10

#: Columns of the list of skipped molecules (``predict --errors``).
MOLECULE_COLUMNS = ("record", "smiles", "reason")
#: Columns of the list of skipped spectrum records (``search --errors``, ``index --errors``).
SPECTRUM_COLUMNS = ("file", "line", "record", "reason")


@dataclass(frozen=True)
class RecordProblem:
    """An input that was skipped, and why.

    Attributes
    ----------
    record
        The record's name as the user knows it (``"row 4 (benzene)"``, a compound name, a spectrum's title).
    reason
        Why it was skipped, in words.
    file, line
        Where it was read (spectrum records): the file's name and the line of the problem; ``""`` and ``0`` when
        the input did not come from a spectrum file.
    smiles
        The molecule's SMILES as given (molecules), shortened by whoever makes the problem when it is very long.
    """

    record: str
    reason: str
    file: str = ""
    line: int = 0
    smiles: str = ""

    def __str__(self) -> str:
        if self.file:
            return f"{self.file}:{self.line} (record {self.record!r}): {self.reason}"
        return f"{self.record}: {self.reason}"


class ProblemLog:
    """The problems of one run: collected into the caller's list and logged, the first few one by one.

    Parameters
    ----------
    what
        What is skipped, plural, for the closing count (``"bad records"``, ``"molecules"``).
    where
        Named before the closing count (a file name), or ``""``.
    collected
        A list that receives every reported problem, or ``None``.
    log
        The logger to write to (the caller's, so that its name says who skipped).
    """

    def __init__(self, what: str, where: str = "", collected: list | None = None,
                 log: logging.Logger | None = None):
        self.what = what
        self.where = where
        self.collected = collected
        self.log = log or logger
        self.count = 0

    def report(self, problem: RecordProblem) -> None:
        """Count ``problem``, add it to the collected list and log it while under :data:`MAX_LOGGED_PROBLEMS`."""
        self.count += 1
        if self.collected is not None:
            self.collected.append(problem)
        if self.count <= MAX_LOGGED_PROBLEMS:
            self.log.warning("skipped %s", problem)

    def close(self) -> None:
        """Log the total in one line when more problems were reported than logged."""
        if self.count > MAX_LOGGED_PROBLEMS:
            where = f"{self.where}: " if self.where else ""
            self.log.warning("%sskipped %d %s in all", where, self.count, self.what)


def _one_line(value: object) -> str:
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_problems(problems: Iterable[RecordProblem], path: str | os.PathLike,
                   columns: Sequence[str] = SPECTRUM_COLUMNS) -> Path:
    """Write problems as a TSV with the named ``columns`` (attributes of :class:`RecordProblem`), atomically.

    Tabs and line breaks inside a field become spaces, so that every problem is one line; fields are quoted as
    :mod:`csv` quotes them (a field holding ``"``), so that :func:`read_problems` and spreadsheet programs read
    them back as written.
    """
    path = Path(path)
    with atomic_output(path) as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_one_line(getattr(problem, column)) for column in columns] for problem in problems)
    return path


def read_problems(path: str | os.PathLike) -> list[RecordProblem]:
    """The problems of a TSV written by :func:`write_problems` (any of its column sets), in file order."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [RecordProblem(record=row.get("record", ""), reason=row.get("reason", ""), file=row.get("file", ""),
                          line=int(row.get("line") or 0), smiles=row.get("smiles", "")) for row in rows]


__all__ = ["MAX_LOGGED_PROBLEMS", "MOLECULE_COLUMNS", "SPECTRUM_COLUMNS", "ProblemLog", "RecordProblem",
           "read_problems", "write_problems"]
