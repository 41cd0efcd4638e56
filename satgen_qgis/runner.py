"""Runs engine calls (engine/calls.py) for the algorithms, in one of two places:

- SatGen's own Python environment (engine_env.py; or the interpreter named by SATGEN_PYTHON), as a
  subprocess (engine_process.py, engine/worker.py): numpy, torch and rasterio of its own, apart from
  QGIS's; progress, log lines and cancel over pipes;
- QGIS's own Python, when no such environment exists and QGIS's Python imports the engine's
  packages (a developer's set-up, or a user who installed them there).

Both take the same Call and give the same plain result, so an algorithm does not know which ran it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import engine_env
from .engine import calls, environment
from .engine_process import EngineMissingError, run_in_subprocess


def engine_python() -> str | None:
    """The interpreter that runs the engine as a subprocess; None: QGIS's own Python runs it."""
    chosen = os.environ.get("SATGEN_PYTHON", "").strip()
    if chosen:
        return chosen
    env = engine_env.current()
    return str(env.python) if env is not None else None


def can_run() -> bool:
    """Whether an engine is there to run calls (not whether its packages all import: check_dependencies)."""
    python = engine_python()
    return Path(python).exists() if python is not None else not environment.missing()


def where() -> str:
    """One line: where engine calls run now."""
    python = engine_python()
    if python is not None:
        return f"SatGen's engine environment ({python})"
    if not environment.missing():
        return f"QGIS's Python ({sys.version.split()[0]})"
    return "nowhere: the engine's packages are missing"


def missing_message() -> str:
    """One line: what is missing and how to get it."""
    names = ", ".join(environment.missing())
    return (f"SatGen's engine is not installed (QGIS's Python lacks {names}): run SatGen > Check dependencies "
            f"with 'Install what is missing' ticked (command line: qgis_process run satgen:check_dependencies "
            f"-- INSTALL=true), then run this again.")


def run(call: calls.Call, feedback) -> object:
    """Run `call` with `feedback` (an engine Feedback; a QgisFeedback logs the engine's stderr too);
    the call's plain result. Raises the engine's errors (SatGenError subclasses) as the engine raised
    them, EngineMissingError when nothing can run it."""
    request = json.loads(json.dumps(call.request()))  # the same data in both places
    python = engine_python()
    if python is not None:
        return run_in_subprocess(python, request, feedback)
    if environment.missing():
        raise EngineMissingError(missing_message())
    return calls.run(request, feedback)
