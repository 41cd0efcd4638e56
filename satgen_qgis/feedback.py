"""Engine feedback over QgsProcessingFeedback: progress bar, log, cancel button."""

from .engine.progress import Feedback


class QgisFeedback(Feedback):
    def __init__(self, feedback):
        self.feedback = feedback

    def progress(self, fraction: float) -> None:
        if self.feedback is not None:
            self.feedback.setProgress(100.0 * fraction)

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
