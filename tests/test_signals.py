"""Signals end runs cleanly: SIGTERM stops predict, search and train within seconds, saying so, and leaves no
temporary file; workers die with their parent, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from matchms_neims.benchmark import processes_with

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PDEATHSIG is Linux's")


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _start(arguments: list[str], tmp_path: Path, marker: str) -> subprocess.Popen:
    env = dict(os.environ, NEIMS_TEST_MARKER=marker, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "matchms_neims.cli", *arguments], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _terminate_and_expect_a_clean_stop(process: subprocess.Popen) -> None:
    """Send SIGTERM to a working command; it must stop within 10 s, with exit code 143 and saying so."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 10, stderr[-2000:]
    assert process.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in stderr, stderr[-2000:]


@pytest.fixture
def many_molecules(tmp_path) -> Path:
    path = tmp_path / "many.smi"
    path.write_text("".join(f"{'C' * (1 + i % 20)}{'O' * (i % 3)}N m{i}\n" for i in range(40_000)))
    return path


def _wait_until_working(process: subprocess.Popen, tmp_path: Path, pattern: str) -> None:
    assert _wait_for(lambda: any(tmp_path.glob(pattern)) or process.poll() is not None, 60)
    assert process.poll() is None, process.communicate()


def test_sigterm_stops_predict_quickly_without_debris(tmp_path, tiny_model_path, many_molecules):
    marker = uuid.uuid4().hex
    process = _start(["predict", str(many_molecules), "-o", "out.msp", "--errors", "errors.tsv", "--model",
                      str(tiny_model_path), "--featurize-workers", "1", "--chunk-size", "256"], tmp_path, marker)
    _wait_until_working(process, tmp_path, ".out.msp.*.tmp")
    _terminate_and_expect_a_clean_stop(process)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "out.msp").exists()
    assert _wait_for(lambda: not processes_with(marker), 10), "a featurisation worker outlived its parent"


def test_workers_die_with_a_parent_killed_by_sigkill_and_its_temporary_file_is_cleaned_later(
        tmp_path, tiny_model_path, many_molecules):
    marker = uuid.uuid4().hex
    process = _start(["predict", str(many_molecules), "-o", "out.msp", "--model", str(tiny_model_path),
                      "--featurize-workers", "1", "--chunk-size", "256"], tmp_path, marker)
    _wait_until_working(process, tmp_path, ".out.msp.*.tmp")
    process.kill()
    process.communicate(timeout=30)
    assert _wait_for(lambda: not processes_with(marker), 10), "a featurisation worker outlived its parent"
    stale = list(tmp_path.glob(".out.msp.*.tmp"))
    assert stale, "SIGKILL leaves the temporary file of the library"
    keep = tmp_path / f".out.msp.{os.getpid()}.abc.tmp"  # a live process's (this one's): never touched
    keep.write_text("in use")
    small = tmp_path / "small.smi"
    small.write_text("CCO ethanol\n")
    assert subprocess.run([sys.executable, "-m", "matchms_neims.cli", "predict", str(small), "-o", "out.msp",
                           "--model", str(tiny_model_path)], cwd=tmp_path, capture_output=True).returncode == 0
    assert not any(path.exists() for path in stale) and keep.exists()


def test_sigterm_stops_search(tmp_path, fixtures_dir):
    library = tmp_path / "library.msp"
    record = (fixtures_dir / "nist_style.msp").read_text().strip() + "\n\n"
    library.write_text(record * 20_000)
    marker = uuid.uuid4().hex
    process = _start(["search", str(library), str(library), "-o", "hits.tsv", "--library-block-size", "500"],
                     tmp_path, marker)
    assert _wait_for(lambda: _has_open(process.pid, library) or process.poll() is not None, 60)  # reading
    assert process.poll() is None
    _terminate_and_expect_a_clean_stop(process)
    assert not (tmp_path / "hits.tsv").exists() and not list(tmp_path.glob(".*.tmp"))


def test_sigterm_stops_training_quickly_and_saying_so(tmp_path, tiny_training_config):
    config = tiny_training_config("baseline.yaml", tmp_path)
    config.optim.max_epochs = 500
    config.trainer.torch_threads = 1
    config.to_yaml(tmp_path / "tiny.yaml")
    marker = uuid.uuid4().hex
    process = _start(["train", "baseline", "--config", str(tmp_path / "tiny.yaml"), "--no-progress"], tmp_path, marker)
    assert _wait_for(lambda: (tmp_path / "run" / "last.ckpt").exists() or process.poll() is not None, 120)
    assert process.poll() is None, process.communicate()
    _terminate_and_expect_a_clean_stop(process)
    assert not list((tmp_path / "run").glob(".*.tmp")), "no half-written checkpoint"
    assert _wait_for(lambda: not processes_with(marker), 10)


def test_sigterm_stops_a_sharded_predict_and_resume_finishes_it(tmp_path, tiny_model_path, many_molecules):
    marker = uuid.uuid4().hex
    arguments = ["predict", str(many_molecules), "-o", "out.msp", "--model", str(tiny_model_path), "--shard-size",
                 "2000", "--devices", "1"]
    process = _start(arguments, tmp_path, marker)
    assert _wait_for(lambda: any((tmp_path / "out.msp.shards").glob("shard-*.json")) or process.poll() is not None,
                     120)
    assert process.poll() is None, process.communicate()
    _terminate_and_expect_a_clean_stop(process)
    assert not (tmp_path / "out.msp").exists() and not list((tmp_path / "out.msp.shards").glob(".*.tmp"))
    resumed = subprocess.run([sys.executable, "-m", "matchms_neims.cli", *arguments, "--resume"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "out.msp").exists() and not (tmp_path / "out.msp.shards").exists()


def test_only_our_own_stale_temporaries_are_removed(tmp_path):
    from matchms_neims.utils import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.{dead_pid}.k3j_x9.tmp"
    others = [tmp_path / f".out.5.{dead_pid}.k3j_x9.tmp",  # the temporary of another output, "out.5"
              tmp_path / f".out.{os.getpid()}.abc.tmp",  # a live process's
              tmp_path / ".out.notapid.abc.tmp", tmp_path / f"out.{dead_pid}.abc.tmp"]
    for path in [stale, *others]:
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path / "out") == [stale]
    assert all(path.exists() for path in others)
