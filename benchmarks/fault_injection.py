"""Fault injection: signals at random moments of ``predict``, and what they leave behind.

Two trials, each repeated ``--trials`` times at seeded random moments:

* **SIGTERM** to a plain ``predict``: the run must end with exit code 143 (or 0 if it had finished), within
  10 s, leave no temporary file and no process behind, and either no library or the complete one;
* **SIGKILL, then ``--resume``** of a sharded ``predict``: the resumed library must equal, byte for byte,
  the one a plain run writes (duplicates are found across shards).

The input is the first ``--molecules`` lines of the NIST 17 list with 5% bad lines mixed in at seeded random
positions. Results go to a JSON file (``-o``). Run from the repository root::

    python benchmarks/fault_injection.py --model matchms_neims/weights/neims_student.pt \\
        -o benchmarks/results/fault_injection.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from matchms_neims.benchmark import processes_with

BAD_LINES = ["C1CC(", "not a molecule", "*CC", "C" * 60, "\t", "[Xx]", "C" * 1200]


def make_input(source: Path, n_molecules: int, path: Path, seed: int) -> int:
    rng = random.Random(seed)
    lines = source.read_text().splitlines()[:n_molecules]
    for _ in range(len(lines) // 20):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(BAD_LINES))
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def run(arguments: list[str], cwd: Path, marker: str, kill_after: float | None = None,
        kill_signal: int = signal.SIGTERM) -> tuple[int, float]:
    env = dict(os.environ, NEIMS_FAULT_MARKER=marker, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "matchms_neims.cli", *arguments], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stopped_in = 0.0
    if kill_after is not None:
        try:
            process.wait(kill_after)
        except subprocess.TimeoutExpired:
            sent = time.monotonic()
            process.send_signal(kill_signal)
            process.wait(60)
            stopped_in = time.monotonic() - sent
    return process.wait(), stopped_in


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--molecules", type=int, default=3000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    model = str(Path(args.model).resolve())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        n_lines = make_input(Path("../shared/data/nist17_molecules.smi").resolve(), args.molecules,
                             work / "input.smi", args.seed)
        common = ["--model", model, "--featurize-workers", "1", "--chunk-size", "256"]
        started = time.monotonic()
        code, _ = run(["predict", "input.smi", "-o", "plain.msp", "--errors", "plain.tsv", *common], work, "ref")
        plain_seconds = time.monotonic() - started
        assert code == 0, "the reference run failed"
        reference = (work / "plain.msp").read_bytes()
        sigterm = []
        for trial in range(args.trials):
            marker = uuid.uuid4().hex
            delay = rng.uniform(0.5, plain_seconds)
            output = f"term{trial}.msp"
            code, stopped_in = run(["predict", "input.smi", "-o", output, "--errors", f"term{trial}.tsv", *common],
                                   work, marker, delay)
            time.sleep(0.5)
            library = work / output
            sigterm.append({"delay_s": round(delay, 2), "exit_code": code, "stopped_in_s": round(stopped_in, 2),
                            "temporary_files": leftovers(work), "processes_left": len(processes_with(marker)),
                            "library": "complete" if library.exists() and library.read_bytes() == reference
                            else "absent" if not library.exists() else "DIFFERENT"})
        sharded_arguments = ["predict", "input.smi", "-o", "sharded.msp", "--model", model, "--shard-size", "300",
                             "--devices", "1"]
        sigkill = []
        for _ in range(args.trials):
            marker = uuid.uuid4().hex
            delay = rng.uniform(1.0, plain_seconds + 6.0)
            code, _ = run(sharded_arguments, work, marker, delay, signal.SIGKILL)
            time.sleep(1.0)
            left = len(processes_with(marker))
            resumed, _ = run([*sharded_arguments, "--resume"], work, uuid.uuid4().hex)
            library = work / "sharded.msp"
            sigkill.append({"delay_s": round(delay, 2), "killed_exit_code": code, "processes_left": left,
                            "resume_exit_code": resumed,
                            "identical_to_plain": library.exists() and library.read_bytes() == reference,
                            "temporary_files_after_resume": leftovers(work)})
            library.unlink(missing_ok=True)
    result = {
        "input_lines": n_lines, "model": args.model, "plain_run_s": round(plain_seconds, 1),
        "sigterm": {"trials": sigterm,
                    # -15: killed by SIGTERM before the handler was installed (imports) or after the run had
                    # ended (the library complete); a shell shows it as 143 too
                    "clean": sum(t["exit_code"] in (0, 143, -signal.SIGTERM) and not t["temporary_files"]
                                 and not t["processes_left"]
                                 and t["library"] != "DIFFERENT" and t["stopped_in_s"] < 10 for t in sigterm),
                    "max_stop_s": max(t["stopped_in_s"] for t in sigterm)},
        "sigkill_then_resume": {"trials": sigkill,
                                "identical": sum(t["identical_to_plain"] and t["resume_exit_code"] == 0
                                                 and not t["processes_left"] for t in sigkill)},
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n_lines} input lines; plain run {plain_seconds:.1f} s")
    print(f"SIGTERM: {result['sigterm']['clean']} of {len(sigterm)} clean (exit 0/143/-15, no temporary file, no "
          f"process left, library absent or complete), slowest stop {result['sigterm']['max_stop_s']:.2f} s")
    print(f"SIGKILL + --resume: {result['sigkill_then_resume']['identical']} of {len(sigkill)} identical to the "
          "plain run, no process left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
