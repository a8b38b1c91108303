"""`make bench`: the suite measured side by side with the tools people would otherwise use.

Each case: one warm-up, then N runs; median, min and max; ratios are taken pair by pair
from the same run. Results go to bench/results/<date>-<host>.md.

A case is a function of a Context (bench/context.py) listed in CASES below: a new case lives in
a module of its own (bench/case_<name>.py) and adds one line here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import cases_fanout, cases_inproc, cases_single
from bench.case_exec_node import case_exec_node
from bench.common import REPO_ROOT
from bench.context import Case, Context
from bench.lab import bring_down, bring_up
from bench.report import Report, write_report

# In the order they run (the order of the rows in the report).
CASES: list[Case] = [
    Case("one_command", cases_single.case_one_command),
    Case("fan_out", cases_fanout.case_fan_out),
    Case("facts", cases_fanout.case_facts, in_quick=False),
    Case("status", cases_fanout.case_status),
    Case("parallel", cases_fanout.case_parallel),
    Case("job", cases_single.case_job),
    Case("light", cases_single.case_light),
    Case("routing", cases_inproc.case_routing, needs_lab=False),
    Case("simulated", cases_inproc.case_simulated, needs_lab=False),
    # Its own small lab (an execution node, a bastion and a worker hidden behind them).
    Case("exec_node", lambda ctx: case_exec_node(ctx.report, ctx.runs), needs_lab=False, in_quick=False),
    Case("memory", cases_single.case_memory, in_quick=False),
    Case("mitogen", cases_fanout.case_mitogen),  # only with --mitogen-venv
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 nodes, 3 runs, a subset (a few minutes)")
    parser.add_argument("--nodes", type=int, default=100, help="lab size for the full run (default 100)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="",
                        help=f"comma-separated cases to run, of: {', '.join(c.name for c in CASES)}")
    parser.add_argument("--sizes", default="", help="comma-separated N: only the rows at these sizes (e.g. 100)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the bench lab up afterwards")
    parser.add_argument("--mitogen-venv", type=Path, default=os.environ.get("JEXIDA_BENCH_MITOGEN_VENV") or None,
                        help="a venv with mitogen: adds lever 3's rows, not adopted (env JEXIDA_BENCH_MITOGEN_VENV)")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - {c.name for c in CASES})
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; cases are: {', '.join(c.name for c in CASES)}")
    chosen = [c for c in CASES if (c.name in only if only else (c.in_quick or not args.quick))]
    count = 3 if args.quick else args.nodes
    # A partial run (--only/--sizes) may take fewer runs; the full run keeps at least 5.
    partial = bool(only or args.sizes)
    runs = 3 if args.quick else args.runs if partial else max(args.runs, 5)
    only_sizes = tuple(int(n) for n in args.sizes.split(",") if n.strip())
    needs_lab = any(c.needs_lab for c in chosen)
    ctx = Context(report=Report(), runs=runs, quick=args.quick, lab_size=count if needs_lab else 0,
                  mitogen_venv=args.mitogen_venv, only_sizes=only_sizes)
    if needs_lab:
        ctx.lab = bring_up(count)
    try:
        for case in chosen:
            case.run(ctx)
    finally:
        lab_line = ctx.lab.describe() if ctx.lab else "No lab (in-process cases only)."
        suffix = ("-quick" if args.quick else f"-{count}" if needs_lab else "-inproc") + ("-partial" if partial else "")
        if partial:
            ctx.report.notes.append(f"partial run: cases {', '.join(c.name for c in chosen)}"
                                    f"{f', sizes N in {list(only_sizes)}' if only_sizes else ''}, {runs} runs each")
        path = write_report(ctx.report, lab_line, runs, suffix)
        print(f"\nbench: results in {path.relative_to(REPO_ROOT)}")
        if needs_lab and not args.keep_lab:
            bring_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
