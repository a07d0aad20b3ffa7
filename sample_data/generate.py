"""Regenerate the committed sample data: ``bundle/`` (an export bundle) and ``planted.json``.

Run from the repository root with the project's environment::

    .venv/bin/python sample_data/generate.py            # seed 0, three months, ~2,000 entries

The output is deterministic for a seed: the same agents, grants, actions, entry ids, seqs and
planted problems every time; only keys and signatures differ, so a regenerated bundle has new
hashes in its manifest but the same content. ``tests/test_sample_data.py`` checks that the
committed bundle verifies and matches a fresh generation.

A large ledger (for the benchmark or to try the notebooks at scale) is made with
``grantex-local --ledger big.db demo --size large --entries 1000000`` or
``grantex_local.sample.generate("big.db", size="large", entries=1_000_000)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grantex_local.sample import summary_lines, write_sample_data

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write (default: this one)")
    args = parser.parse_args()
    manifest = write_sample_data(args.out, seed=args.seed, months=args.months)
    for line in summary_lines(manifest, str(args.out / "bundle")):
        print(line)


if __name__ == "__main__":
    main()
