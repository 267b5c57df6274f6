"""The `livercore` command line: a thin shell over the package."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from livercore.errors import InputError


def _phantom_export(args: argparse.Namespace) -> int:
    from livercore.phantom.export import export_cohort

    start = time.perf_counter()
    manifest = export_cohort(
        args.cohort, args.out, seed=args.seed, size=args.size, workers=args.workers
    )
    seconds = time.perf_counter() - start
    counts = manifest["category"].value_counts().sort_index().to_dict()
    print(
        f"wrote {len(manifest)} cases ({3 * len(manifest)} DICOM files) and {args.out}/manifest.csv "
        f"in {seconds:.1f} s; categories {counts}"
    )
    return 0


def _phantom_montage(args: argparse.Namespace) -> int:
    from livercore.phantom.export import montage

    path = montage(args.out, seed=args.seed)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livercore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    phantom = sub.add_parser("phantom", help="synthetic triphasic CT cohorts").add_subparsers(
        dest="action", required=True
    )
    exp = phantom.add_parser("export", help="write a cohort as DICOM files and manifest.csv")
    exp.add_argument("--cohort", required=True, help="train-2013, test-2016 or any other name")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument(
        "--size", type=int, default=None, help="patients (cohorts other than train-2013)"
    )
    exp.add_argument("--out", required=True)
    exp.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    exp.set_defaults(func=_phantom_export)
    mon = phantom.add_parser("montage", help="an atlas PNG of every category and subtype")
    mon.add_argument("--out", required=True)
    mon.add_argument("--seed", type=int, default=0)
    mon.set_defaults(func=_phantom_montage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
