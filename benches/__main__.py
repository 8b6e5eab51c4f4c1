"""``python -m benches [--quick] [--only SUITE ...]``: run the suites and write docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from base.exceptions import exit_status
from base.settings import get_settings
from benches.run import run_benchmarks


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark suites (all, or those named) and return the exit status."""
    parser = argparse.ArgumentParser(prog="whatsup bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, print only")
    parser.add_argument("--only", nargs="+", metavar="SUITE", help="run only these suites (default: all)")
    args = parser.parse_args(argv)
    return exit_status(
        "whatsup bench", lambda: run_benchmarks(get_settings(), quick=args.quick, only=args.only or ())
    )


if __name__ == "__main__":
    raise SystemExit(main())
