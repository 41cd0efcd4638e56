"""The engine as a child process (engine/worker.py): start it isolated from QGIS's Python, pass the
request, turn its JSON lines into progress and log lines, pass the cancel button on as a `cancel`
line (the engine stops at its next check and removes what it had begun; a process still running
GRACE seconds later is killed, with the processes it started), and raise its errors again."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess  # nosec B404  # the engine's own interpreter, started without a shell
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import engine as engine_package
from .engine import calls
from .engine.errors import SatGenError

GRACE = 10.0  # seconds a cancelled engine process has to stop before it is killed
# variables of QGIS's process that would point the engine's Python or GDAL at QGIS's own files
FOREIGN_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
                     "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA")


class EngineMissingError(SatGenError):
    """Neither SatGen's environment nor QGIS's Python can run the engine."""


def worker_command(python: str) -> list[str]:
    """The command that runs engine/worker.py with `python`: isolated (-I: no PYTHONPATH, user site or
    current folder), the engine imported from this plugin under its own package name."""
    package = engine_package.__name__  # "engine" in a checkout, "satgen_qgis.engine" in the plugin zip
    root = Path(engine_package.__file__).resolve().parents[package.count(".") + 1]
    code = (f"import sys; sys.path.append({str(root)!r}); from {package}.worker import main; "
            f"sys.exit(main())")
    return [python, "-I", "-X", "utf8", "-c", code]  # -I ignores PYTHONIOENCODING; -X utf8 does not


# subprocess.run/Popen keywords: no console window flashing up on Windows
NO_WINDOW = {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)} if os.name == "nt" else {}


def child_environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}
    env.update(PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    return env


def start(command: list[str], **kwargs) -> subprocess.Popen:
    """A child process with pipes, in its own process group, without a console window on Windows."""
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    return subprocess.Popen(  # nosec B603  # a list, no shell
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        encoding="utf-8", errors="replace", bufsize=1, env=child_environment(),
        start_new_session=os.name != "nt", creationflags=flags if os.name == "nt" else 0, **kwargs)


def kill(process: subprocess.Popen) -> None:
    """End a child and what it started (its process group)."""
    if process.poll() is not None:
        return
    try:
        if os.name != "nt":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:
        pass
    process.wait()


def close_pipes(process: subprocess.Popen) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def follow(process: subprocess.Popen, check: Callable[[], None]) -> Iterator[tuple[str, str]]:
    """(stream, line) pairs from a child's stdout and stderr as they come, until both end; `check()` runs
    at least every 0.1 s in between (to look at the cancel button; it may raise)."""
    out: queue.Queue = queue.Queue()

    def pump(name, stream):
        try:
            for line in stream:
                out.put((name, line.rstrip("\r\n")))
        except (OSError, ValueError):  # closed under it, after a cancel
            pass
        out.put((name, None))

    for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
        threading.Thread(target=pump, args=(name, stream), daemon=True).start()
    open_streams = 2
    while open_streams:
        check()
        try:
            stream, line = out.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        else:
            yield stream, line


def log(feedback, line: str) -> None:
    if hasattr(feedback, "console"):
        feedback.console(line)


def run_in_subprocess(python: str, request: dict, feedback) -> object:
    if not Path(python).exists():
        raise EngineMissingError(f"SatGen's engine environment is broken: {python} does not exist; run SatGen > Check "
                                 f"dependencies with 'Install what is missing' ticked to build it again")
    try:
        process = start(worker_command(python))
    except OSError as exc:
        raise EngineMissingError(f"cannot start SatGen's engine with {python} ({exc}); run SatGen > Check dependencies "
                                 f"with 'Install what is missing' ticked to build its environment again") from None
    try:
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
    except OSError:
        pass  # it has already stopped: its stderr says why
    outcome, cancel_sent, tail = None, None, []

    def check():  # the cancel button: ask the engine to stop, end it GRACE seconds later
        nonlocal cancel_sent
        if cancel_sent is None and feedback is not None and feedback.is_cancelled():
            cancel_sent = time.monotonic()
            try:
                process.stdin.write("cancel\n")
                process.stdin.flush()
            except OSError:
                pass
        if cancel_sent is not None and time.monotonic() - cancel_sent > GRACE:
            kill(process)
            raise SatGenError(f"Cancelled: the engine did not stop within {GRACE:.0f} s and was ended, so a hidden "
                              f"partial file (.<name>.<host>-<pid>.part.<ext>) may be left beside the output; "
                              f"delete it")

    try:
        for stream, line in follow(process, check):
            if stream == "stderr":
                tail = (tail + [line])[-20:]
                log(feedback, line)
            else:
                outcome = handle(line, feedback) or outcome
    finally:
        if process.poll() is None:
            try:
                process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            kill(process)
        close_pipes(process)
    if outcome is None:
        raise SatGenError(f"SatGen's engine stopped without an answer (exit status {process.returncode}); "
                          f"its last lines: {' | '.join(tail[-5:]) or 'none'}")
    kind, value = outcome
    if kind == "error":
        if value.get("type") == "internal":
            raise SatGenError(f"SatGen's engine failed: {value.get('message')} (the log above has the details)")
        calls.raise_error(value)
    return value


def handle(line: str, feedback):
    """One line of the worker's stdout; ("result", value) or ("error", data) at the end."""
    try:
        message = json.loads(line)
    except ValueError:
        log(feedback, line)
        return None
    if not isinstance(message, dict):
        return None
    if "progress" in message and feedback is not None:
        feedback.progress(float(message["progress"]))
    elif "info" in message and feedback is not None:
        feedback.info(str(message["info"]))
    elif "status" in message and feedback is not None:
        feedback.status(str(message["status"]))
    elif "result" in message:
        return "result", message["result"]
    elif "error" in message:
        return "error", message["error"]
    return None
