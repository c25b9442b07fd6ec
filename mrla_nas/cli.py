"""The ``mrla-nas`` command line: a thin layer over the public Python API.

Errors in what the user gave print one line (``mrla-nas: error: ...``) and exit with code 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def _cmd_cost(args) -> None:
    import timm

    import mrla_nas  # noqa: F401  (registers the MRLA models)
    from mrla_nas.cost import measure

    shape = (1, args.in_chans, args.input_size, args.input_size)
    known = set(timm.list_models())
    for name in args.models:
        if name not in known:
            close = [m for m in timm.list_models(f"*{name.split('_')[-1]}*")][:5]
            raise UsageError(f"model={name!r} is not a registered timm model"
                             + (f"; did you mean one of {close}?" if close else ""))
    rows = []
    for name in args.models:
        model = timm.create_model(name, num_classes=args.num_classes, in_chans=args.in_chans)
        rows.append((name, measure(model, shape, convention=args.convention)))
    ref = rows[0][1]
    print(f"input {shape[1:]} | FLOPs convention: {args.convention} (1 multiply-add = 1 FLOP)")
    print(f"{'model':26s} {'params':>12s} {'FLOPs':>15s} {'d params':>10s} {'d GFLOPs':>9s} {'x FLOPs':>8s}")
    for name, c in rows:
        print(f"{name:26s} {c.params:12,d} {c.flops:15,d} {c.params - ref.params:+10,d} "
              f"{(c.flops - ref.flops) / 1e9:+9.3f} {c.flops / ref.flops:8.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrla-nas", description="Search where MRLA layer attention pays off.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cost", help="params and FLOPs (fvcore) of timm / MRLA models, side by side")
    p.add_argument("models", nargs="+", help="registered model names; the first is the reference")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--convention", choices=["fvcore", "complete"], default="fvcore")
    p.set_defaults(func=_cmd_cost)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ValueError) as e:
        print(f"mrla-nas: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
