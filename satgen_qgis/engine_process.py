"""The engine as a child process (engine/worker.py): start it isolated from QGIS's Python, pass the
request, turn its JSON lines into progress and log lines, pass the cancel button on as a `cancel`
line (the engine stops at its next check and removes what it had begun; a process still running
GRACE seconds later is killed, with the processes it started), and raise its errors again. A
process is kept IDLE_SECONDS for the next run (SATGEN_WORKER_IDLE; 0: one process per run)."""

from __future__ import annotations

import atexit
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
    group = {"creationflags": NO_WINDOW["creationflags"] | subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" \
        else {"start_new_session": True}
    return subprocess.Popen(  # nosec B603  # a list, no shell
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        encoding="utf-8", errors="replace", bufsize=1, env=child_environment(), **group, **kwargs)


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


def pump(process: subprocess.Popen) -> queue.Queue:
    """A queue of (stream, line) from a child's stdout and stderr as they come, and (stream, None) at
    each one's end, filled by two daemon threads while the caller looks at its cancel button."""
    out: queue.Queue = queue.Queue()

    def read(name, stream):
        try:
            for line in stream:
                out.put((name, line.rstrip("\r\n")))
        except (OSError, ValueError):  # closed under it, after a cancel
            pass
        out.put((name, None))

    for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
        threading.Thread(target=read, args=(name, stream), daemon=True).start()
    return out


def follow(process: subprocess.Popen, check: Callable[[], None]) -> Iterator[tuple[str, str]]:
    """(stream, line) pairs from a child's stdout and stderr as they come, until both end; `check()` runs
    at least every 0.1 s in between (to look at the cancel button; it may raise)."""
    out = pump(process)
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


# seconds an engine process waits, idle, for the next run before it is ended (0: one process per run);
# a kept process spares the next run the start and the imports (*Performance* in the README)
IDLE_SECONDS = float(os.environ.get("SATGEN_WORKER_IDLE", "600") or 0)
_IDLE: list[Worker] = []
_IDLE_LOCK = threading.Lock()


class Worker:
    """One engine process serving calls one after another (engine/worker.py), its output lines
    pumped into a queue by two threads for as long as it lives."""

    def __init__(self, python: str):
        self.python = python
        self.process = start(worker_command(python))
        self.lines = pump(self.process)
        self.open_streams = 2
        self.idle_since = 0.0

    def send(self, line: str) -> bool:
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def usable(self) -> bool:
        return self.process.poll() is None and self.open_streams == 2

    def close(self) -> None:
        """End it: stdin's end makes it exit; killed if it has not after a few seconds."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            kill(self.process)
        close_pipes(self.process)


def _take(python: str) -> tuple[Worker, bool]:
    """An idle process for `python`, or a new one; (worker, whether it had served before)."""
    now = time.monotonic()
    with _IDLE_LOCK:
        expired = [w for w in _IDLE if now - w.idle_since > IDLE_SECONDS or not w.usable()]
        for worker in expired:
            _IDLE.remove(worker)
        found = next((w for w in _IDLE if w.python == python), None)
        if found is not None:
            _IDLE.remove(found)
    for worker in expired:
        worker.close()
    return (found, True) if found is not None else (Worker(python), False)


def _give_back(worker: Worker) -> None:
    if IDLE_SECONDS > 0 and worker.usable():
        worker.idle_since = time.monotonic()
        with _IDLE_LOCK:
            _IDLE.append(worker)
    else:
        worker.close()


@atexit.register
def close_idle() -> None:
    """End the idle engine processes (at exit; they would also end when QGIS's end closes their stdin)."""
    with _IDLE_LOCK:
        idle = list(_IDLE)
        _IDLE.clear()
    for worker in idle:
        worker.close()


def run_in_subprocess(python: str, request: dict, feedback) -> object:
    """Run `request` in an engine process of `python` (an idle one when there is one); its result,
    or its error raised again."""
    if not Path(python).exists():
        raise EngineMissingError(f"SatGen's engine environment is broken: {python} does not exist; run SatGen > Check "
                                 f"dependencies with 'Install what is missing' ticked to build it again")
    for _attempt in range(2):
        try:
            worker, reused = _take(python)
        except OSError as exc:
            raise EngineMissingError(f"cannot start SatGen's engine with {python} ({exc}); run SatGen > Check "
                                     f"dependencies with 'Install what is missing' ticked to build its environment "
                                     f"again") from None
        while reused and not worker.lines.empty():  # what it wrote while idle belongs to no run
            _stream, line = worker.lines.get_nowait()
            if line is None:
                worker.open_streams -= 1
        if worker.usable() and worker.send(json.dumps(request)):
            break
        worker.close()
        if not reused:
            break  # a new process that cannot take a request: its stderr tells why (below)
    outcome, tail = _serve(worker, feedback)
    if outcome is None:
        worker.close()
        raise SatGenError(f"SatGen's engine stopped without an answer (exit status {worker.process.returncode}); "
                          f"its last lines: {' | '.join(tail[-5:]) or 'none'}")
    _give_back(worker)
    kind, value = outcome
    if kind == "error":
        if value.get("type") == "internal":
            raise SatGenError(f"SatGen's engine failed: {value.get('message')} (the log above has the details)")
        calls.raise_error(value)
    return value


def _serve(worker: Worker, feedback) -> tuple[tuple[str, object] | None, list[str]]:
    """Follow one call: progress and log lines to `feedback`, the cancel button passed on (a process
    that has not stopped GRACE seconds later is killed); (("result" | "error", value) or None when the
    process ended without one, its last stderr lines)."""
    cancel_sent, tail = None, []
    while worker.open_streams:
        if cancel_sent is None and feedback is not None and feedback.is_cancelled():
            cancel_sent = time.monotonic()
            worker.send("cancel")
        if cancel_sent is not None and time.monotonic() - cancel_sent > GRACE:
            kill(worker.process)
            worker.close()
            raise SatGenError(f"Cancelled: the engine did not stop within {GRACE:.0f} s and was ended, so a hidden "
                              f"partial file (.<name>.<host>-<pid>.part.<ext>) may be left beside the output; "
                              f"delete it")
        try:
            stream, line = worker.lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            worker.open_streams -= 1
        elif stream == "stderr":
            tail = (tail + [line])[-20:]
            log(feedback, line)
        else:
            outcome = handle(line, feedback)
            if outcome is not None:
                return outcome, tail
    return None, tail


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
