"""Measure configurations side by side: each in processes of its own, one round each in turn.

Two things move a figure here besides the code measured: slow spells of a shared machine that
last seconds, and the process itself (where its objects landed in memory, its hash seed): the
same configuration can run 1.5x slower in one process than in the next. So each configuration
runs in several processes, the processes take turns round by round, the cost a configuration
adds is taken turn by turn against the median of the bare processes' rounds in the same turn
(so one bare process's own luck is not counted against one other process), and the median of
those is the figure.

Instructions and first-level data cache misses, counted by valgrind's cachegrind in a simulated
cache, are the other measures (`added_counts`): the same counts on every run of the same code
on the same machine, however busy it is, though not times. Most of a small instrumentation's
time goes to cache misses (a request through a web framework runs through more code and data
than the cache holds), so its time lies between what its instructions and its misses predict.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

CALLS_VARIABLE = "RESPAN_BENCH_CALLS"


def serve(
    one_call: Callable[[], None], per_round: int, before_round: Callable[[], None] = lambda: None
) -> None:
    """In a measured process: per line read, time a round of `per_round` calls and print the
    microseconds per call. With RESPAN_BENCH_CALLS set, make that many calls (in rounds alike)
    and exit: for counting instructions."""
    calls = os.environ.get(CALLS_VARIABLE)
    if calls:
        for done in range(int(calls)):
            if done % per_round == 0:
                before_round()
            one_call()
        return
    for _ in sys.stdin:
        before_round()
        started = time.perf_counter()
        for _ in range(per_round):
            one_call()
        print(json.dumps((time.perf_counter() - started) / per_round * 1e6), flush=True)


def added_counts(
    script: str,
    configurations: Mapping[str, Sequence[str]],
    bare: str = "bare",
    calls: tuple[int, int] = (200, 1200),
) -> dict[str, tuple[float, dict[str, float]]]:
    """Run `script --serve ARGS...` under cachegrind, making `calls[0]` and then `calls[1]`
    calls: the difference, per call, is what one call costs, start-up and warm-up left out.
    Returns, for "instructions" and for "cache misses" (the first-level data cache's, as
    cachegrind simulates it), the bare figure and, per other configuration, what it added."""

    def count(arguments: Sequence[str], number: int) -> tuple[int, int]:
        result = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null",
             sys.executable, script, "--serve", *arguments],
            env={**os.environ, CALLS_VARIABLE: str(number), "PYTHONHASHSEED": "0"},
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        found = [re.search(pattern, result.stderr) for pattern in _CACHEGRIND_TOTALS]
        if result.returncode or not all(found):
            raise RuntimeError(f"cachegrind failed on {arguments}: {result.stderr[-2000:]}")
        instructions, misses = (int(one[1].replace(",", "")) for one in found)
        return instructions, misses

    runs = [(name, number) for name in configurations for number in calls]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        found = pool.map(lambda run: count(configurations[run[0]], run[1]), runs)
        counts = dict(zip(runs, found, strict=True))
    figures = {}
    for index, measure in enumerate(("instructions", "cache misses")):
        per_call = {
            name: (counts[name, calls[1]][index] - counts[name, calls[0]][index])
            / (calls[1] - calls[0])
            for name in configurations
        }
        figures[measure] = per_call[bare], {
            name: figure - per_call[bare] for name, figure in per_call.items() if name != bare
        }
    return figures


_CACHEGRIND_TOTALS = (r"I\s+refs:\s+([\d,]+)", r"D1\s+misses:\s+([\d,]+)")


def added_costs(
    script: str,
    configurations: Mapping[str, Sequence[str]],
    turns: int,
    bare: str = "bare",
    processes_each: int = 5,
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
    bare_by_turn = [
        statistics.median(figures[bare, copy][turn] for copy in range(processes_each))
        for turn in range(turns)
    ]
    added = {
        name: statistics.median(
            one - zero
            for copy in range(processes_each)
            for one, zero in zip(figures[name, copy], bare_by_turn, strict=True)
        )
        for name in configurations
        if name != bare
    }
    base = statistics.median(f for copy in range(processes_each) for f in figures[bare, copy])
    return base, added
