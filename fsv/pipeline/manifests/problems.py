"""Problems found while reading, building or checking a manifest, reported all at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from fsv.errors import FsvInputError


@dataclass(frozen=True)
class Problem:
    """One problem: where it is (file and 1-based line when known) and what to do about it."""

    source: str
    line: int | None
    message: str
    video_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        who = f" [{self.video_id}]" if self.video_id else ""
        return f"{where}:{who} {self.message}"


@dataclass
class ProblemList:
    """An ordered collection of problems; ``raise_if_any`` turns them into one input error."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, source: str, line: int | None, message: str, video_id: str | None = None) -> None:
        self.problems.append(Problem(source, line, message, video_id))

    def extend(self, other: "ProblemList | list[Problem]") -> None:
        self.problems.extend(other.problems if isinstance(other, ProblemList) else other)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self):
        return iter(self.problems)

    def format(self, limit: int | None = None) -> str:
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [str(p) for p in shown]
        if limit is not None and len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        return "\n".join(lines)

    def raise_if_any(self, what: str) -> None:
        if self.problems:
            raise FsvInputError(f"{what}: {len(self.problems)} problem(s)\n{self.format(limit=200)}")
