"""The engine as a subprocess: one call per process, progress and cancel over pipes.

The QGIS plugin starts `python -I -c ...` in the engine's own environment (numpy, torch and
rasterio of its own, apart from QGIS's) and runs `main()`:

- stdin: the first line is the request (`engine.calls.Call.request()` as JSON); a later line
  `cancel` (or stdin closing, when QGIS goes away) makes `is_cancelled()` true, so the engine
  stops at its next check and removes its partial outputs as on any cancel.
- stdout: one JSON object per line: {"progress": f}, {"info": text}, {"status": text}, then {"result": ...} or
  {"error": {"type": ..., "message": ...}}. Anything else that writes to stdout (a library, C code)
  is sent to stderr, which the plugin shows as log lines.
- exit status: 0 with a result, 1 with an error, 2 for a malformed request.
"""

from __future__ import annotations

import json
import os
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
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._last = -1.0
        self._status_sent = 0.0

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
        return self.cancelled.is_set()

    def listen(self, stdin) -> None:
        """Watch stdin for `cancel` (in a daemon thread)."""
        def watch():
            for line in stdin:
                if line.strip() == "cancel":
                    break
            self.cancelled.set()  # cancel, or stdin closed: the plugin is gone

        threading.Thread(target=watch, name="satgen-cancel", daemon=True).start()


def main() -> int:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray writes to fd 1 go to stderr
    sys.stdout = sys.stderr
    feedback = PipeFeedback(protocol)
    try:
        request = json.loads(sys.stdin.readline())
        if not isinstance(request, dict):
            raise ValueError("the request is not a JSON object")
    except ValueError as exc:
        feedback.send({"error": {"type": "internal", "message": f"malformed request: {exc}"}})
        return 2
    feedback.listen(sys.stdin)
    try:
        result = calls.run(request, feedback)
    except BaseException as exc:  # every failure goes back over the pipe, as the in-process runner raises it
        error = calls.error_data(exc)
        if error["type"] == "internal":
            traceback.print_exc(file=sys.stderr)
        feedback.send({"error": error})
        return 1
    feedback.send({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
