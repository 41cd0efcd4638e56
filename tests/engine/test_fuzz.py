"""Fuzzing the engine's untrusted inputs (tests/fuzzing.py): model files, QA expressions, tile grids,
class-folder data sets. Each target runs in its own process with a capped address space, so a case
that allocates without bound fails here instead of exhausting the machine.

`make test` / `make test-fast`: a few cases per target (seconds). `make fuzz`: SATGEN_FUZZ_CASES
cases per target (and SATGEN_FUZZ_SEED to draw other cases). A failure lists each failing case
with its seed, mutation and the command that replays it with its traceback.
"""

import os
import subprocess
import sys

import pytest

from helpers import ROOT

# cases per target in `make test`: a few seconds each on a 2-core machine
DEFAULT_CASES = {"models": 60, "qa": 400, "windows": 300, "datasets": 40}
PER_CASE_SECONDS = {"models": 2.0, "qa": 0.1, "windows": 0.1, "datasets": 1.0}  # generous: a loaded machine


@pytest.mark.parametrize("target", list(DEFAULT_CASES))
def test_fuzz(target):
    cases = int(os.environ.get("SATGEN_FUZZ_CASES") or DEFAULT_CASES[target])
    seed = int(os.environ.get("SATGEN_FUZZ_SEED") or 0)
    command = [sys.executable, str(ROOT / "tests" / "fuzzing.py"), target, "--cases", str(cases), "--seed", str(seed),
               "--trace"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, errors="replace",
                         timeout=120 + PER_CASE_SECONDS[target] * cases)
    lines = run.stdout.strip().splitlines()
    print(lines[-1] if lines else "(no summary)")  # `make fuzz` shows it: cases, time, outcomes
    if run.returncode < 0:  # killed by a signal (a crash in native code): name the case it was on
        started = [line for line in run.stderr.splitlines() if line.startswith("case ")]
        pytest.fail(f"the {target} fuzzer died of signal {-run.returncode} in {started[-1] if started else '?'} "
                    f"(seed {seed}); replay: .venv/bin/python tests/fuzzing.py {target} --seed {seed} "
                    f"--case N\n{run.stderr[-3000:]}")
    assert run.returncode == 0, "\n".join(lines[-60:]) or run.stderr[-3000:]
