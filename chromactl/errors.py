"""The one error family chromactl raises for problems an operator can fix.

The CLI turns a ChromactlError into one line on stderr (or, under --json, one JSON
document on stdout) and its exit code; anything else is a bug and keeps its traceback.

Exit codes, stable for scripts (README "Exit codes"):
  1  a refused operation: bad project files, a state chromactl will not act on, a declined prompt
  2  usage: an unknown option, a bad value for a flag or a variable
  3  the container engine cannot be reached, or a change could not reach the running server
  4  a server that is down, unhealthy, not enforcing auth, or with a revocation not yet in effect
"""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DOCKER_UNAVAILABLE = 3
EXIT_NOT_HEALTHY = 4
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


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


class UsageError(ChromactlError):
    """A value the operator gave that cannot be used (a flag, a variable): exit 2."""

    exit_code = EXIT_USAGE


class Cancelled(ChromactlError):
    """The operator declined a confirmation: a choice, not an error (printed without "error")."""


class ProjectFileError(ChromactlError):
    """A project file that does not parse or contradicts itself: names the file and line."""

    def __init__(self, filename: str, message: str, line: int | None = None, hint: str | None = None):
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {message}", hint)
        self.filename = filename
        self.line = line
