"""What the driver (`orchestrator.study`) asks of the units of one type: how to check, run and plan them.

A study's units of work (``sweeps.studies.units_of``) come in types — language-model trials, recovery batches,
function runs — and each type has a ``Runner``: the one piece of ``orchestrator`` a new kind of unit adds. Its
``execute`` hands the units to an executor: the Tune grid (`orchestrator.lm`) or bounded Ray tasks
(`orchestrator.tasks`), both drawing the same progress line (`orchestrator.progress`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TextIO

from orchestrator.results import ResultsDir
from sweeps.base import StudyBase


class Runner(Protocol):
    """How the units of one type are checked, run and planned."""

    noun: str
    """What the units' ids are called on the progress line and in messages ("trials", "tasks", …)."""

    def resources(self, spec: StudyBase, units: list[Any]) -> dict[str, float]:
        """What one unit takes ({"CPU": …, "GPU": …}), for the check that a cluster can reach the results."""
        ...

    def prepare(self, spec: StudyBase, units: list[Any], *, results: ResultsDir, say: Callable[[str], None]) -> None:
        """Everything that can refuse the units before anything is written (data, paths); raises InputError."""
        ...

    def execute(
        self,
        spec: StudyBase,
        units: list[Any],
        *,
        results: ResultsDir,
        max_concurrent: int | None,
        stream: TextIO,
    ) -> None:
        """Run the units (Ray is up); each writes its own rows, from which the driver reads the outcome."""
        ...

    def plan_text(self, spec: StudyBase, units: list[Any], statuses: dict[str, str]) -> str:
        """The dry run of the units: one line per unit or group, with its status in ``statuses``, and totals."""
        ...
