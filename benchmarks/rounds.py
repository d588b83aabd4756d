"""Measure configurations side by side: each in a process of its own, one round each in turn.

A shared machine has slow spells that last seconds; measured one after the other, one
configuration could get a slow spell and the next a fast one. Taking turns round by round
spreads the spells over all of them, and each configuration's best round is its figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence


def serve(one_round: Callable[[], float]) -> None:
    """In a measured process: run one round (returning its figure) per line read."""
    for _ in sys.stdin:
        print(json.dumps(one_round()), flush=True)


def best_rounds(
    script: str, configurations: Mapping[str, Sequence[str]], rounds: int
) -> dict[str, float]:
    """Start `script --serve ARGS...` per configuration, then take turns; the best figures."""
    processes = {
        name: subprocess.Popen(
            [sys.executable, script, "--serve", *arguments],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for name, arguments in configurations.items()
    }
    best = dict.fromkeys(processes, float("inf"))
    try:
        for _ in range(rounds):
            for name, process in processes.items():
                process.stdin.write("go\n")
                process.stdin.flush()
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the {name!r} configuration stopped; run it alone")
                best[name] = min(best[name], json.loads(line))
    finally:
        for process in processes.values():
            process.stdin.close()
            process.wait(timeout=30)
    return best
