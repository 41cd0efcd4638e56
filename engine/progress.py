"""Progress and cancel across the engine boundary.

The engine only calls the three methods of `Feedback`; the CLI passes a console
bar, the QGIS plugin an adapter over QgsProcessingFeedback, tests a plain object.
"""

from __future__ import annotations

import sys
import time

from .errors import Cancelled


class Feedback:
    """Do-nothing feedback: never cancelled, progress ignored."""

    def progress(self, fraction: float) -> None:
        """Report overall progress in [0, 1]."""

    def info(self, message: str) -> None:
        """Report a line of information for the user."""

    def status(self, text: str) -> None:
        """Say what is going on now, in a few words (stage, tiles done, epoch and losses): shown beside
        the progress bar, replaced by the next status."""

    def is_cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise Cancelled("cancelled by the user; nothing was written")


def training_status(epoch: int, epochs: int, step: int, steps: int, history: list[dict]) -> str:
    """The status of a training step: 'epoch 3/20, step 5/16; last epoch loss_g_l1 0.123 val_miou 0.41'."""
    text = f"epoch {epoch + 1}/{epochs}, step {step + 1}/{steps}"
    if history:
        last = history[-1]
        text += "; last epoch " + " ".join(f"{k} {v:.3g}" for k, v in last.items()
                                           if k.startswith(("loss_", "val_")) and isinstance(v, (int, float)))
    return text


class ConsoleFeedback(Feedback):
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width = stream, width
        self._last = 0.0
        self._start = time.monotonic()

    def progress(self, fraction: float) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if fraction >= 1.0 else ""
        self.stream.write(f"\r[{bar}] {100 * fraction:5.1f}%  {now - self._start:6.1f}s{end}")
        self.stream.flush()

    def info(self, message: str) -> None:
        self.stream.write(f"{message}\n")
        self.stream.flush()
