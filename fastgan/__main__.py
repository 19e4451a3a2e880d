"""Command line: `python -m fastgan info` (also the `fastgan` console script)."""
import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastgan", description="fastgan: fused operators for fast GAN training")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, whether fastgan._C loaded, ops and their kernels")
    args = parser.parse_args(argv)
    if args.command == "info":
        from .info import report
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
