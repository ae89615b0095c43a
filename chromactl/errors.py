"""The one error family chromactl raises for problems an operator can fix.

The CLI turns a ChromactlError into one line on stderr and its exit code; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

# Exit codes, stable for scripts.
EXIT_ERROR = 1  # bad input, bad project files, a refused operation
EXIT_DOCKER_UNAVAILABLE = 3  # the Docker engine cannot be reached
EXIT_NOT_HEALTHY = 4  # a server that is down, unhealthy or not enforcing auth


class ChromactlError(Exception):
    """A problem with a clear one-line message and, often, a hint at the fix."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None,
                 details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # context printed before the message, e.g. a container's last log lines
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ProjectFileError(ChromactlError):
    """A project file that does not parse or contradicts itself: names the file and line."""

    def __init__(self, filename: str, message: str, line: int | None = None, hint: str | None = None):
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {message}", hint)
        self.filename = filename
        self.line = line
