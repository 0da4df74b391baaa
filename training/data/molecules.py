"""Lazy molecule lists for pretraining: byte-offset indexes of SMILES, CSV and SDF files.

Only the offsets of the records are kept in RAM (8 bytes per molecule), so lists of millions of
molecules (e.g. PCQM4Mv2's ``data.csv``) can be sampled at random without loading them. Each record
is read and parsed when asked for.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from rdkit import Chem

from matchms_neims.chemistry import MoleculeError, parse_smiles

SMILES_COLUMNS = ("smiles", "SMILES", "canonical_smiles", "Smiles")


class MoleculeFile:
    """Random access to the molecules of one ``.smi``/``.txt``, ``.csv``/``.tsv`` or ``.sdf`` file.

    Parameters
    ----------
    path
        The file. SMILES files hold a SMILES (and optionally a name) per line, ``#`` comments allowed;
        tables need a header with a SMILES column; SDF records end with ``$$$$``.
    max_molecules
        Index only the first N records (0: all).
    """

    def __init__(self, path: str | os.PathLike, max_molecules: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"molecule file {self.path} not found")
        suffix = self.path.suffix.lower()
        if suffix in (".smi", ".smiles", ".txt"):
            self.kind = "smi"
        elif suffix in (".csv", ".tsv"):
            self.kind = "table"
        elif suffix in (".sdf", ".sd", ".mol"):
            self.kind = "sdf"
        else:
            raise ValueError(f"{self.path}: unsupported molecule file type {suffix!r} (use .smi, .csv, .tsv or .sdf)")
        self.delimiter = "\t" if suffix == ".tsv" else ","
        self.smiles_column = 0
        self.offsets = self._index(max_molecules)
        self._handle = None

    def _index(self, max_molecules: int) -> np.ndarray:
        offsets: list[int] = []
        with open(self.path, "rb") as handle:
            position = 0
            if self.kind == "table":
                header = handle.readline()
                position = len(header)
                fields = next(csv.reader([header.decode("utf-8", "replace").strip()], delimiter=self.delimiter))
                found = [name for name in SMILES_COLUMNS if name in fields]
                if not found:
                    raise ValueError(f"{self.path}: no SMILES column in the header (looked for {SMILES_COLUMNS})")
                self.smiles_column = fields.index(found[0])
            record_start: int | None = position
            seen_data = False  # a "SMILES name" header may precede the first record
            for line in handle:
                if max_molecules and len(offsets) >= max_molecules:
                    break
                if self.kind == "sdf":  # a record starts after "$$$$" (its first line, the name, may be blank)
                    if record_start is not None and line.strip():
                        offsets.append(record_start)
                        record_start = None
                    if line.startswith(b"$$$$"):
                        record_start = position + len(line)
                elif line.strip() and not line.startswith(b"#"):
                    is_header = not seen_data and line.split()[0].lower() in (b"smiles", b"smi")
                    if not is_header:
                        offsets.append(position)
                    seen_data = True
                position += len(line)
        return np.asarray(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None  # each DataLoader worker opens its own handle
        return state

    def record_label(self, index: int) -> str:
        return f"{self.path.name} record {index + 1}"

    def molecule(self, index: int) -> Chem.Mol:
        """Parse record ``index``.

        Raises
        ------
        MoleculeError
            When the record cannot be parsed (the message names file and record).
        """
        if self._handle is None:
            self._handle = open(self.path, "rb")  # noqa: SIM115 - kept open for random access
        self._handle.seek(int(self.offsets[index]))
        label = self.record_label(index)
        if self.kind == "sdf":
            lines = []
            for line in self._handle:
                if line.startswith(b"$$$$"):
                    break
                lines.append(line)
            mol = Chem.MolFromMolBlock(b"".join(lines).decode("utf-8", "replace"))
            if mol is None:
                raise MoleculeError(label, "unreadable SDF record")
            return parse_smiles(Chem.MolToSmiles(mol), label)
        line = self._handle.readline().decode("utf-8", "replace").strip()
        if self.kind == "table":
            fields = next(csv.reader(io.StringIO(line), delimiter=self.delimiter))
            smiles = fields[self.smiles_column] if len(fields) > self.smiles_column else ""
        else:
            smiles = line.split()[0]
        return parse_smiles(smiles, label)


class SmilesList:
    """In-memory SMILES with the same interface as :class:`MoleculeFile` (e.g. the training split's molecules)."""

    def __init__(self, smiles: list[str], name: str = "smiles"):
        self.smiles = list(smiles)
        self.name = name

    def __len__(self) -> int:
        return len(self.smiles)

    def record_label(self, index: int) -> str:
        return f"{self.name} record {index + 1}"

    def molecule(self, index: int) -> Chem.Mol:
        return parse_smiles(self.smiles[index], self.record_label(index))
