"""``python -m demos [--drivers N] [--minutes M] [--timeout S]``: the pipeline at work on a running stack."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from base.exceptions import exit_status
from base.settings import get_settings
from demos.run import run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Tell the demo's story and return 0 if every step held."""
    parser = argparse.ArgumentParser(prog="whatsup demo", description=__doc__)
    parser.add_argument("--drivers", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=20.0, help="simulated period per driver")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    return exit_status(
        "whatsup demo",
        lambda: run_demo(get_settings(), drivers=args.drivers, minutes=args.minutes, timeout_s=args.timeout),
    )


if __name__ == "__main__":
    raise SystemExit(main())
