"""Wall time of `smgeo --help`, `smgeo COMMAND --help` and a usage error: what a user waits for before any work.

Each command runs in a fresh `python -m smgeo_cli` process, ``--repeats``
times; the median is printed, with `python -c pass` (the interpreter's own
start-up) for scale. ``--source DIR`` runs the package found in DIR instead of
the installed one (a checkout of another commit: `git archive main | tar -x
-C DIR`), so two versions are timed on one machine in one sitting.

    python benchmarks/cli_startup.py [--repeats 15] [--source DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "smgeo --help": ["-m", "smgeo_cli", "--help"],
    "smgeo locate --help": ["-m", "smgeo_cli", "locate", "--help"],
    "smgeo batch --help": ["-m", "smgeo_cli", "batch", "--help"],
    "usage error (locate --click 1)": ["-m", "smgeo_cli", "locate", "p.jpg", "--click", "1", "--ref", "r.tif"],
    "usage error (batch --fps nan)": ["-m", "smgeo_cli", "batch", "d", "--ref", "r.tif", "-o", "o.geojson",
                                      "--fps", "nan"],  # fmt: skip
}


def median_seconds(args: list[str], repeats: int, env: dict[str, str], cwd: str) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=cwd, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--source", help="Folder holding the smgeo_cli package to time instead of the installed one.")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.source, env.get("PYTHONPATH")]))
    print(f"median of {args.repeats} runs, {os.cpu_count()} CPUs, package from {args.source or 'the installed smgeo'}")
    # From an empty folder: `python -m` looks in the current folder first, which must not hold another smgeo_cli.
    with tempfile.TemporaryDirectory() as cwd:
        for name, command in COMMANDS.items():
            print(f"{name:<34} {median_seconds(command, args.repeats, env, cwd):6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
