"""The ``fastmlp`` command line (also ``python -m fastmlp``)."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    from ._info import info

    d = info()
    print(f"fastmlp {d['version']}")
    print(f"CPU kernels: {d['isa']} (available: {', '.join(d['available_isas'])})")
    print(f"OpenMP threads: {d['threads']}")
    print(f"CUDA: {d['cuda']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmlp", description="fastmlp command line")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, CPU kernel set, threads, CUDA status").set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
