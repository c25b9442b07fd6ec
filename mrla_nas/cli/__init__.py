"""The ``mrla-nas`` command line: a thin layer over the package (the top layer: it imports any other,
none imports it). ``parser.py`` holds the subcommands and their arguments, ``arguments.py`` the
checks of single values, ``commands.py`` what each subcommand does.

Errors in what the user gave print one line (``mrla-nas: error: ...``) and exit with code 2.
"""
from __future__ import annotations

import sys
from typing import List, Optional

from .arguments import UsageError
from .parser import build_parser

__all__ = ["main", "build_parser", "UsageError"]


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI. Bad input (a ConfigError from the package, a usage error) is one line and exit 2;
    anything else is a bug and keeps its traceback (exit 1)."""
    from mrla_nas.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ConfigError) as e:
        print(f"mrla-nas: error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mrla-nas: interrupted" + ("; `mrla-nas search ... --resume` continues the run"
                                         if args.command == "search" else ""), file=sys.stderr)
        return 130
    return 0
