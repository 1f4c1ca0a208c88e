"""Cross-date (or same-date) pairs of chosen NAIP California places, one split, for training or held-out tests.

    python scripts/bundled/stack_pairs.py NAIP_FOLDER OUT --places chico long_beach --pairs-per-stack 6 \
        --split train --seed 11 [--same-date]

The reference tile comes from one year, the drone view is rendered from another
(``smgeo_cli.data.stacks``); places are the ``<place>`` of ``<place>_<year>_<n>.tif``.
"""

from __future__ import annotations

import argparse

from smgeo_cli.data.stacks import find_stacks, write_stack_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--places", nargs="+", required=True)
    parser.add_argument("--pairs-per-stack", type=int, default=1)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--query-size", type=int, default=128)
    parser.add_argument("--same-date", action="store_true")
    args = parser.parse_args()

    stacks = [stack for stack in find_stacks([args.folder]) if stack.place in args.places]
    missing = set(args.places) - {stack.place for stack in stacks}
    if missing:
        parser.error(f"no stacks of {', '.join(sorted(missing))} in {args.folder}")
    count = write_stack_pairs(
        stacks, args.out, pairs_per_stack=args.pairs_per_stack, same_date=args.same_date,
        seed=args.seed, query_size=args.query_size, split=args.split, name="NAIPStacks",
    )
    print(f"{args.out}: {count} pairs of {', '.join(args.places)} ({args.split})")


if __name__ == "__main__":
    main()
