"""The one problem type: RecordProblem, its log cap and its TSV list."""

import csv
import logging
import pickle

from matchms_neims.chemistry import MAX_SMILES_LENGTH, MoleculeError
from matchms_neims.problems import (
    MAX_LOGGED_PROBLEMS,
    MOLECULE_COLUMNS,
    SPECTRUM_COLUMNS,
    ProblemLog,
    RecordProblem,
    read_problems,
    write_problems,
)


def test_a_problem_names_where_it_was_read_or_only_the_record():
    read = RecordProblem("Kojic acid", "NaN in a peak line", file="bad.msp", line=7)
    assert str(read) == "bad.msp:7 (record 'Kojic acid'): NaN in a peak line"
    assert str(RecordProblem("row 4 (bad one)", "unparsable SMILES 'C1'", smiles="C1")) == (
        "row 4 (bad one): unparsable SMILES 'C1'")
    assert pickle.loads(pickle.dumps(read)) == read  # problems come back from featurisation workers


def test_a_molecule_error_becomes_the_problem_of_its_molecule_with_a_long_smiles_shortened():
    error = MoleculeError("line 3", "SMILES too long")
    problem = error.problem("C" * (MAX_SMILES_LENGTH + 500))
    assert (problem.record, problem.reason, problem.file, problem.line) == ("line 3", "SMILES too long", "", 0)
    assert problem.smiles.startswith("C" * MAX_SMILES_LENGTH) and problem.smiles.endswith("(1,500 characters)")
    assert error.problem("CCO").smiles == "CCO" and str(error.problem("CCO")) == str(error)


def test_the_list_reads_back_as_written_for_both_column_sets(tmp_path):
    molecules = [RecordProblem("row 2", "unparsable SMILES 'C(('", smiles="C(("),
                 RecordProblem('a "quoted"\tname', "reason with\na line break", smiles='"odd"')]
    path = write_problems(molecules, tmp_path / "molecules.tsv", MOLECULE_COLUMNS)
    lines = path.read_text().splitlines()
    assert lines[0] == "record\tsmiles\treason" and len(lines) == 3  # one line per problem
    assert [(p.record, p.smiles, p.reason) for p in read_problems(path)] == [
        ("row 2", "C((", "unparsable SMILES 'C(('"), ('a "quoted" name', '"odd"', "reason with a line break")]

    spectra = [RecordProblem("cut query", "truncated", file="queries.msp", line=18)]
    path = write_problems(spectra, tmp_path / "spectra.tsv")
    assert path.read_text() == "file\tline\trecord\treason\nqueries.msp\t18\tcut query\ttruncated\n"
    assert read_problems(path) == spectra
    with path.open(newline="") as handle:  # what a user's own script reads
        assert list(csv.DictReader(handle, delimiter="\t"))[0]["line"] == "18"
    assert SPECTRUM_COLUMNS == ("file", "line", "record", "reason")


def test_the_log_shows_the_first_problems_and_counts_the_rest_in_one_line(caplog):
    collected = []
    log = ProblemLog("bad records", where="big.msp", collected=collected)
    with caplog.at_level(logging.WARNING, logger="matchms_neims.problems"):
        for number in range(MAX_LOGGED_PROBLEMS + 5):
            log.report(RecordProblem(f"record {number}", "empty"))
        log.close()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:2] == ["skipped record 0: empty", "skipped record 1: empty"]
    assert len(messages) == MAX_LOGGED_PROBLEMS + 1
    assert messages[-1] == f"big.msp: skipped {MAX_LOGGED_PROBLEMS + 5} bad records in all"
    assert len(collected) == log.count == MAX_LOGGED_PROBLEMS + 5
