"""Engine feedback over QgsProcessingFeedback: progress bar with the stage and the time left, log,
cancel button."""

import time

from .engine.progress import Feedback


def duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:02.0f} min"


class QgisFeedback(Feedback):
    def __init__(self, feedback):
        self.feedback = feedback
        self.started = time.monotonic()
        self.fraction, self.text = 0.0, ""
        self.shown, self.shown_at = "", 0.0

    def progress(self, fraction: float) -> None:
        if self.feedback is not None:
            self.fraction = fraction
            self.feedback.setProgress(100.0 * fraction)
            self.show()

    def status(self, text: str) -> None:
        self.text = text
        self.show()

    def eta(self) -> str:
        """'about 3 min left' once enough is done to tell (2 % and 3 s), else ''."""
        elapsed = time.monotonic() - self.started
        if self.fraction < 0.02 or elapsed < 3 or self.fraction >= 1:
            return ""
        return f"about {duration(elapsed * (1 - self.fraction) / self.fraction)} left"

    def show(self) -> None:
        """The status and the time left as the progress text: the dialog shows it above the bar and adds it
        to the log, qgis_process prints it, so only when it changed, at most every 10 s."""
        now = time.monotonic()
        if self.feedback is None or now - self.shown_at < 10:
            return
        text = " · ".join(t for t in (self.text, self.eta()) if t)
        if text and text != self.shown:
            self.shown, self.shown_at = text, now
            self.feedback.setProgressText(text)

    def info(self, message: str) -> None:
        if self.feedback is None:
            return
        if message.startswith("warning: "):  # shown in the warning colour in the dialog's log
            self.feedback.pushWarning(message[len("warning: "):])
        else:
            self.feedback.pushInfo(message)

    def is_cancelled(self) -> bool:
        return self.feedback is not None and self.feedback.isCanceled()

    def console(self, line: str) -> None:
        """A line the engine's process wrote outside its messages (library warnings, tracebacks)."""
        if self.feedback is not None:
            self.feedback.pushConsoleInfo(line)
