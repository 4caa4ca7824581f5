"""One error base for the workbench (as papermill's exceptions module): every error a user
can meet derives from `WorkbenchError` and carries the problem in Chinese (`problem`), ready
to be shown on a screen or printed by the CLI without a traceback."""
from __future__ import annotations


class WorkbenchError(Exception):
    """An error a person can act on: `problem` says what is wrong, in Chinese."""

    def __init__(self, problem: str, *, where: str | None = None):
        self.problem = problem
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)


class ConfigError(WorkbenchError):
    """A rules file, profile or registration that cannot be used (names the file and line)."""


class RegistryError(WorkbenchError):
    """A department, case type, alert category or loader that is not registered."""
