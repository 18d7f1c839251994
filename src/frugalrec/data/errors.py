"""Validation errors that say where the problem is: file, line and field."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file. ``line`` is 1-based and counts the header."""

    file: str
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field is not None:
            where += f" [{self.field}]"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class DataValidationError(ValueError):
    """Raised when input data is invalid; carries every problem found (up to a cap)."""

    def __init__(self, problems: list[Problem], truncated: int = 0) -> None:
        self.problems = problems
        self.truncated = truncated
        head = "; ".join(str(p) for p in problems[:5])
        more = len(problems) - 5 + truncated
        super().__init__(head + (f"; ... and {more} more" if more > 0 else ""))
