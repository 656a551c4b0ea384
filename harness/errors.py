"""User-facing errors: one clear line per problem, exit code 2, no traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """An error caused by the user's input. The CLI prints each line and exits with 2."""

    exit_code = 2

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StudyError(HarnessError):
    """A study file that cannot be loaded or fails validation."""
