"""The engine as a subprocess: calls one after another, progress and cancel over pipes.

The QGIS plugin starts `python -I -c ...` in the engine's own environment (numpy, torch and
rasterio of its own, apart from QGIS's) and runs `main()`, which serves calls until stdin ends, so
a worker kept between runs spares the next run the start and the imports:

- stdin: a request per line (`engine.calls.Call.request()` as JSON); while one runs, a line
  `cancel` makes `is_cancelled()` true, so the engine stops at its next check and removes its
  partial outputs as on any cancel. stdin's end (QGIS gone, or the plugin done with the worker)
  cancels a run in progress and ends the worker.
- stdout: one JSON object per line: {"progress": f}, {"info": text}, {"status": text}, then
  {"result": ...} or {"error": {"type": ..., "message": ...}} ending each call. Anything else
  that writes to stdout (a library, C code) is sent to stderr, which the plugin shows as log lines.
- exit status: that of the last call: 0 with a result (or none), 1 with an error; 2 for a
  malformed request.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback

from . import calls
from .progress import Feedback


class PipeFeedback(Feedback):
    """Feedback written as JSON lines; cancelled by a `cancel` line on stdin or stdin's end."""

    def __init__(self, stream):
        self.stream = stream
        # requests are numbered as they arrive; a `cancel` line cancels the last one that arrived
        # (the one running, or about to), so a cancel sent right after its request is not lost
        self.running = 0
        self.cancelled_up_to = 0
        self._lock = threading.Lock()
        self._last = -1.0
        self._status_sent = 0.0

    def start(self, number: int) -> None:
        """Before call `number`: progress from the start."""
        self.running = number
        self._last, self._status_sent = -1.0, 0.0

    def send(self, message: dict) -> None:
        line = json.dumps(message, allow_nan=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def progress(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if fraction == 1.0 or fraction - self._last >= 0.001:  # at most a thousand lines a run
            self._last = fraction
            self.send({"progress": fraction})

    def info(self, message: str) -> None:
        self.send({"info": str(message)})

    def status(self, text: str) -> None:
        now = time.monotonic()
        if now - self._status_sent >= 0.2:  # at most five a second
            self._status_sent = now
            self.send({"status": str(text)})

    def is_cancelled(self) -> bool:
        return self.cancelled_up_to >= self.running


def read_lines(stdin, feedback: PipeFeedback) -> queue.Queue:
    """(number, request line) from stdin, in a queue (None at its end), read by a daemon thread that
    also takes `cancel` lines (and the end) as a cancel of the last request."""
    inbox: queue.Queue = queue.Queue()

    def watch():
        number = 0
        for line in stdin:
            if line.strip() == "cancel":
                feedback.cancelled_up_to = number
            elif line.strip():
                number += 1
                inbox.put((number, line))
        feedback.cancelled_up_to = sys.maxsize  # stdin closed: the plugin is gone or done with this worker
        inbox.put(None)

    threading.Thread(target=watch, name="satgen-stdin", daemon=True).start()
    return inbox


def main() -> int:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray writes to fd 1 go to stderr
    sys.stdout = sys.stderr
    feedback = PipeFeedback(protocol)
    inbox = read_lines(sys.stdin, feedback)
    status = 0
    while (item := inbox.get()) is not None:
        number, line = item
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("the request is not a JSON object")
        except ValueError as exc:
            feedback.send({"error": {"type": "internal", "message": f"malformed request: {exc}"}})
            return 2
        feedback.start(number)
        try:
            result = calls.run(request, feedback)
        except BaseException as exc:  # every failure goes back over the pipe, as the in-process runner raises it
            error = calls.error_data(exc)
            if error["type"] == "internal":
                traceback.print_exc(file=sys.stderr)
            feedback.send({"error": error})
            status = 1
            continue
        feedback.send({"result": result})
        status = 0
    return status


if __name__ == "__main__":
    sys.exit(main())
