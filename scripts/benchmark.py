"""Wall time of `python -m preflight check` over every stack, next to its floor: a bare import
of pulumi and the provider SDKs in a fresh interpreter. Target: at most 3x the floor.

Usage: venv/bin/python scripts/benchmark.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = "import pulumi, pulumi_docker, pulumi_gcp, pulumi_random, pulumi_tls, pulumi_policy"


def wall_time(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    wall_time([sys.executable, "-c", FLOOR], 1)  # warm the file cache
    floor = wall_time([sys.executable, "-c", FLOOR], args.runs)
    check = wall_time([sys.executable, "-m", "preflight", "check"], args.runs)
    floor_median, check_median = statistics.median(floor), statistics.median(check)
    ratio = check_median / floor_median
    print(f"floor (import pulumi + SDKs): median {floor_median:.2f}s  min {min(floor):.2f}s  runs {args.runs}")
    print(f"preflight check (all stacks): median {check_median:.2f}s  min {min(check):.2f}s  runs {args.runs}")
    print(f"ratio: {ratio:.2f}x (target <= 3x): {'ok' if ratio <= 3 else 'over target'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
