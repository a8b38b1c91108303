"""The bench's results: rows of samples, ratios, issue targets and notes, and the Markdown file."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT


@dataclass
class Row:
    case: str
    what: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Target:
    metric: str
    before: str
    target: str
    moonshot: str
    value: float
    limit: float
    unit: str

    @property
    def shown(self) -> str:
        return f"{self.value:.2f}{self.unit}" if self.unit == "x" else f"{self.value:.2f} {self.unit}"

    @property
    def met(self) -> bool:
        return self.value <= self.limit


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    ratios: list[tuple[str, str, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    refs: dict[str, Row] = field(default_factory=dict)

    def target(self, metric: str, before: str, target: str, moonshot: str, value: float, limit: float,
               unit: str) -> None:
        self.targets.append(Target(metric, before, target, moonshot, value, limit, unit))
        print(f"  target {metric}: {self.targets[-1].shown} ({'met' if value <= limit else 'missed'}, "
              f"target {target})", flush=True)

    def add(self, case: str, what: str, samples: list[float], note: str = "") -> Row:
        row = Row(case, what, samples, note)
        self.rows.append(row)
        print(f"  {case:<4} {what:<58} median {row.median * 1000:9.1f} ms  "
              f"(min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f}, n={len(samples)}) {note}", flush=True)
        return row

    def ratio(self, label: str, numerator: Row, denominator: Row, target: str = "") -> None:
        value = numerator.median / denominator.median
        self.ratios.append((label, f"{numerator.what} / {denominator.what}", value, target))
        print(f"  ratio {label}: {value:.2f} {target}", flush=True)


def measure(action: Callable[[], Any], runs: int) -> list[float]:
    action()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 1024 / 1024
    import ansible

    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}, ansible-core {ansible.__version__}")


def write_report(report: Report, lab_line: str, runs: int, suffix: str = "") -> Path:
    """Write bench/results/<date>-<host><suffix>.md; ``lab_line`` describes the lab (or its absence)."""
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y-%m-%d')}-{platform.node()}{suffix}.md"
    lines = [f"# jexida-cluster bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Machine: {machine()}", "",
             f"{lab_line} Each case: one warm-up, then {runs} runs. Times in ms.", "",
             "| case | what | median | min | max | runs |", "|---|---|---:|---:|---:|---:|"]
    for row in report.rows:
        lines.append(f"| {row.case} | {row.what} | {row.median * 1000:.1f} | {min(row.samples) * 1000:.1f} | "
                     f"{max(row.samples) * 1000:.1f} | {len(row.samples)} |")
    lines += ["", "## Ratios (same run)", "", "| ratio | of | value | target |", "|---|---|---:|---|"]
    lines += [f"| {label} | {of} | {value:.2f} | {target} |" for label, of, value, target in report.ratios]
    if report.targets:
        lines += ["", "## Targets (this run)", "", "| metric | before | target | moonshot | now | |",
                  "|---|---|---|---|---:|---|"]
        lines += [f"| {t.metric} | {t.before} | {t.target} | {t.moonshot} | {t.shown} | "
                  f"{'met' if t.met else 'missed'} |" for t in report.targets]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    path.write_text("\n".join(lines) + "\n")
    return path
