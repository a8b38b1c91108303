"""What every bench case gets (the report, the lab, the run count) and how a case plugs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.lab import BenchLab
from bench.report import Report


@dataclass
class Context:
    report: Report
    runs: int
    quick: bool
    lab_size: int  # nodes in the lab (0: no lab, in-process cases only)
    lab: BenchLab | None = None
    mitogen_venv: Path | None = None
    only_sizes: tuple[int, ...] = ()  # --sizes: measure only these N (empty: every N a case knows)

    @property
    def bl(self) -> BenchLab:
        if self.lab is None:
            raise RuntimeError("this case needs the lab; run without --no-lab")
        return self.lab

    def sizes(self, *candidates: int) -> list[int]:
        """The candidate N that fit in the lab (the whole lab when none does), limited by --sizes."""
        fit = [n for n in candidates if n <= self.lab_size] or [self.lab_size]
        return [n for n in fit if n in self.only_sizes] if self.only_sizes else fit


@dataclass(frozen=True)
class Case:
    """One case of `python -m bench`: its name for --only, and whether it needs the lab or runs in --quick."""

    name: str
    run: Callable[[Context], None]
    needs_lab: bool = True
    in_quick: bool = True
