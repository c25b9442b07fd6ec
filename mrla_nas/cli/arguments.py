"""The command line's argument types: each checks one value before any work starts, and a bad one is
argparse's one-line usage error (exit code 2) naming the value and what is allowed."""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad input from the user found after parsing: reported as one line, exit code 2."""


def amount(text: str) -> float:
    from mrla_nas.space.schema import parse_amount
    try:
        return parse_amount(text, "--max-flops")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _int_in(text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [{lo}, {hi:,}]")
    return value


def output_file(text: str) -> str:
    """A file to write: checked before any work, so a typo in the folder costs no computation."""
    import os

    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(text) and not os.access(text, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text!r}: cannot be written here")
    return text


PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def plot_file(text: str) -> str:
    import os

    if os.path.splitext(text)[1].lower() not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed file types: {', '.join(PLOT_FORMATS)}")
    return output_file(text)


def gpu_share(text: str) -> float:
    from mrla_nas.errors import ConfigError
    from mrla_nas.space.schema import check_gpu_share
    try:
        value = float(text)
    except ValueError:
        value = text
    try:
        return check_gpu_share(value, "--gpus-per-trial")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None


def positive_int(text: str) -> int:
    return _int_in(text, 1, 100_000_000)


def input_size(text: str) -> int:
    from mrla_nas.space.schema import MAX_RESOLUTION
    return _int_in(text, 1, MAX_RESOLUTION)


def non_negative_int(text: str) -> int:
    return _int_in(text, 0, 2 ** 32 - 1)


def finite_float(text: str) -> float:
    import math
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number >= 0")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (argparse prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0] if message else ''} "
                     f"(`{self.prog} -h` for usage)\n")
