"""Measure configurations side by side: each in processes of its own, one round each in turn.

Two things move a figure here besides the code measured: slow spells of a shared machine that
last seconds, and the process itself (where its objects landed in memory, its hash seed): the
same configuration can run 1.5x slower in one process than in the next. So each configuration
runs in several processes, the processes take turns round by round, the cost a configuration
adds is taken turn by turn against the bare round of the same turn in the same-numbered
process, and the median of those is the figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence


def serve(one_round: Callable[[], float]) -> None:
    """In a measured process: run one round (returning its figure) per line read."""
    for _ in sys.stdin:
        print(json.dumps(one_round()), flush=True)


def added_costs(
    script: str,
    configurations: Mapping[str, Sequence[str]],
    turns: int,
    bare: str = "bare",
    processes_each: int = 3,
) -> tuple[float, dict[str, float]]:
    """Start `script --serve ARGS...` `processes_each` times per configuration and take turns.
    Returns the median bare figure and, per other configuration, the median of what it added."""
    processes = {
        (name, copy): subprocess.Popen(
            [sys.executable, script, "--serve", *arguments],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for copy in range(processes_each)
        for name, arguments in configurations.items()
    }
    figures: dict[tuple[str, int], list[float]] = {key: [] for key in processes}
    try:
        for _ in range(turns):
            for (name, copy), process in processes.items():
                process.stdin.write("go\n")
                process.stdin.flush()
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the {name!r} configuration stopped; run it alone")
                figures[name, copy].append(json.loads(line))
    finally:
        for process in processes.values():
            process.stdin.close()
            process.wait(timeout=30)
    added = {
        name: statistics.median(
            one - zero
            for copy in range(processes_each)
            for one, zero in zip(figures[name, copy], figures[bare, copy], strict=True)
        )
        for name in configurations
        if name != bare
    }
    base = statistics.median(f for copy in range(processes_each) for f in figures[bare, copy])
    return base, added
