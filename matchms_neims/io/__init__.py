"""Reading and writing EI spectra: MSP (NIST, MassBank, MoNA, RIKEN and Golm flavours) and MGF.

One module per format and direction (``msp_reader``, ``mgf_reader``, ``msp_writer``, ``mgf_writer``,
``molecule_reader``: the molecules to predict), what they share (``records``, ``text_files``, ``record_reading``,
``record_text``) and the entry points by file extension (``spectrum_files``). The public names are importable
from ``matchms_neims.io``.

The MSP reader is written for real library exports: several ``Synon:`` lines per record (NIST's
``$:NN`` and Golm's ``KEY: value`` codes read as metadata keys), records whose ``Name`` is not the first line,
peak lists with several ``m/z intensity`` pairs per line separated by ``;``, tabs or spaces,
quoted peak annotations (``41 999 "C3H5+"``), CRLF line endings and records whose
``Num Peaks`` disagrees with the peaks actually listed. It yields lightweight
:class:`SpectrumRecord` objects (fast, used by the search and library code) or
:class:`matchms.Spectrum` objects with matchms' harmonised metadata keys.
"""

from __future__ import annotations

from matchms_neims.io.mgf_reader import iter_mgf
from matchms_neims.io.mgf_writer import format_mgf_record, mgf_header
from matchms_neims.io.molecule_reader import (
    MOLECULE_FORMATS,
    NAME_COLUMNS,
    SMILES_COLUMNS,
    MoleculeFileError,
    MoleculeInput,
    as_molecule_input,
    estimated_molecule_count,
    molecule_format,
    read_molecules,
)
from matchms_neims.io.msp_reader import iter_msp
from matchms_neims.io.msp_writer import format_msp_record, msp_header
from matchms_neims.io.record_reading import MAX_PEAKS_PER_RECORD, MAX_READ_MZ, peak_problem, truncated_reason
from matchms_neims.io.record_text import one_line_text, peak_lines
from matchms_neims.io.records import SpectrumFileError, SpectrumRecord, as_record, spectrum_to_record
from matchms_neims.io.spectrum_files import (
    SPECTRUM_FORMATS,
    detect_format,
    format_record,
    iter_records,
    load_spectra,
    write_spectra,
)
from matchms_neims.io.text_files import (
    CUT_LINE_MARK,
    MAX_LINE_LENGTH,
    RECORD_STARTS,
    count_records,
    decoded_lines,
    is_gzip,
    open_text,
)
from matchms_neims.problems import RecordProblem, write_problems  # what the readers skip, and its list

__all__ = [
    "CUT_LINE_MARK",
    "MAX_LINE_LENGTH",
    "MAX_PEAKS_PER_RECORD",
    "MAX_READ_MZ",
    "MOLECULE_FORMATS",
    "MoleculeFileError",
    "MoleculeInput",
    "NAME_COLUMNS",
    "RECORD_STARTS",
    "RecordProblem",
    "SMILES_COLUMNS",
    "SPECTRUM_FORMATS",
    "SpectrumFileError",
    "SpectrumRecord",
    "as_molecule_input",
    "as_record",
    "count_records",
    "decoded_lines",
    "detect_format",
    "estimated_molecule_count",
    "format_mgf_record",
    "format_msp_record",
    "format_record",
    "is_gzip",
    "iter_mgf",
    "iter_msp",
    "iter_records",
    "load_spectra",
    "mgf_header",
    "molecule_format",
    "msp_header",
    "one_line_text",
    "open_text",
    "peak_lines",
    "peak_problem",
    "read_molecules",
    "spectrum_to_record",
    "truncated_reason",
    "write_problems",
    "write_spectra",
]
