"""Stage times of whole `dvc repro` runs, from the summary line each stage prints, side by side.

Every stage ends with `latentlab <stage>: <summary> [<seconds> s]`; this reads those lines from the saved
output of one or more runs (`dvc repro > run.log 2>&1`) and prints one markdown table: a row per stage,
a column per run, the sum of the stage times, and the last run's time as a share of the first's.
`--critical-path DIR` reads instead the per-stage logs that `latentlab repro` leaves in DIR
(`.dvc/tmp/latentlab-repro/`) and prints the DAG's critical path: the chain of dependent stages with the
largest sum of times, the wall time's lower bound with unlimited cores, beside the sum of all stages.
`--write-typical DIR` writes those per-stage times to `stage-seconds.json`, which a fresh clone's
`latentlab repro` orders its first run by.
Usage: python benchmarks/stage_times.py before.log after.log
       python benchmarks/stage_times.py --critical-path .dvc/tmp/latentlab-repro
       python benchmarks/stage_times.py --write-typical .dvc/tmp/latentlab-repro
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r"^(\[ *\d+/\d+\] )?latentlab (?P<stage>[\w@.-]+): (?P<summary>.*) \[(?P<seconds>[\d.]+) s\]$")


def stage_times(log: Path) -> dict[str, float]:
    """{stage label: seconds}; a stage run several times (a foreach) is labelled by its summary's first part."""
    found = [m for m in map(LINE.match, log.read_text(errors="replace").splitlines()) if m]
    runs = Counter(m["stage"] for m in found)
    times = {}
    for m in found:
        label = m["stage"] if runs[m["stage"]] == 1 else f"{m['stage']} {m['summary'].split(':')[0]}"
        times[label] = float(m["seconds"])
    return times


def critical_path(folder: Path) -> None:
    """Longest chain of the DAG, by the seconds each stage's own log ends with (`<address>.log`)."""
    import networkx as nx
    from dvc.repo import Repo

    from latentlab.cli.parallel import last_times

    times = last_times(folder)
    with Repo(".") as repo:
        graph = repo.index.graph
        best: dict = {}
        for stage in reversed(list(nx.topological_sort(graph))):  # dependencies first
            before = max((best[d] for d in graph.successors(stage)), key=lambda b: b[0], default=(0.0, []))
            best[stage] = (before[0] + times.get(stage.addressing, 0.0), [*before[1], stage.addressing])
    length, chain = max(best.values(), key=lambda b: b[0])
    print(f"critical path {length:,.1f} s: " + " -> ".join(f"{s} ({times.get(s, 0):.0f} s)" for s in chain))
    print(f"sum of all {len(times)} stage times {sum(times.values()):,.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="*", type=Path)
    ap.add_argument("--critical-path", type=Path, metavar="DIR", help="per-stage logs of `latentlab repro`")
    ap.add_argument("--write-typical", type=Path, metavar="DIR", help="per-stage logs to stage-seconds.json")
    args = ap.parse_args()
    if args.write_typical:
        import json

        from latentlab.cli.parallel import TYPICAL, last_times

        times = last_times(args.write_typical)
        TYPICAL.write_text(json.dumps({k: round(v, 1) for k, v in sorted(times.items())}, indent=1) + "\n")
        print(f"{TYPICAL}: {len(times)} stages, {sum(times.values()):,.1f} s in all")
        return
    if args.critical_path:
        critical_path(args.critical_path)
        return
    if not args.logs:
        ap.error("give one or more logs, or --critical-path DIR")
    runs = [stage_times(log) for log in args.logs]
    labels = list(dict.fromkeys(label for run in runs for label in run))
    print("| stage | " + " | ".join(log.name for log in args.logs) + (" | last / first |" if len(runs) > 1 else " |"))
    print("|---|" + "---|" * (len(runs) + (len(runs) > 1)))
    for label in labels + ["sum of stage times"]:
        cells = [sum(run.values()) if label.startswith("sum ") else run.get(label) for run in runs]
        row = " | ".join("—" if c is None else f"{c:,.1f} s" for c in cells)
        if len(runs) > 1:  # the last / first column: "—" where either run lacks the stage
            row += f" | {cells[-1] / cells[0]:.2f}" if cells[0] and cells[-1] is not None else " | —"
        print(f"| {label} | {row} |")


if __name__ == "__main__":
    main()
