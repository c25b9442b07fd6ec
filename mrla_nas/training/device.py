"""Where a network trains and in what arithmetic: the device a recipe's ``device`` names (auto, cpu,
cuda), autocast and the gradient scaler of its ``precision``, channels_last, cudnn's autotuner and
``torch.compile``.

With the defaults on a machine without CUDA, nothing here changes what the trainer computes: no
autocast, no scaler, no layout change, no compilation (the shipped tables retrain bit for bit,
tests/test_tables.py). The rules of the fields are :mod:`mrla_nas.space.recipe`'s.

>>> resolve({"device": "cpu"}).describe()
'cpu'
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..errors import ConfigError
from ..space.recipe import check_precision

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """A resolved device and how a network trains on it."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    note: Optional[str] = None  # why ``auto`` trains on the CPU although the trial holds a GPU share

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """The forward pass's autocast (none for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.precision])

    def scaler(self) -> Optional["torch.amp.GradScaler"]:
        """fp16's gradient scaler (small fp16 gradients underflow to 0 unscaled); None otherwise."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device, in channels_last where asked (NHWC convolutions on tensor cores)."""
        if self.channels_last:
            return model.to(self.device, memory_format=torch.channels_last)
        return model.to(self.device)

    def compiled(self, model: torch.nn.Module):
        """``torch.compile(model)`` where asked (the module itself keeps the parameters and the
        state_dict keys: no ``_orig_mod.`` prefix in a checkpoint)."""
        return torch.compile(model) if self.compile else model

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A CPU batch on the device: from pinned memory without blocking on CUDA, as it is on the CPU."""
        if not self.cuda:
            return x
        if not x.is_pinned():
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A float batch in the network's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """cudnn's autotuner on for the block on CUDA (fixed input sizes: it picks the fastest
        convolution once per shape), as the caller had it afterwards."""
        if not self.cuda:
            yield
            return
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous

    def describe(self) -> str:
        """'cpu', or 'cuda:0 (NVIDIA H200)': what a trial record and a manifest say it ran on."""
        if not self.cuda:
            return "cpu"
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def resolve(recipe: dict, gpu_share: Optional[bool] = None,
            field: Callable[[str], str] = "proxy.{}".format) -> Placement:
    """The placement of a recipe's ``device``, ``precision``, ``channels_last`` and ``compile``.

    ``gpu_share``: whether Ray gave this trial GPUs (None outside a search). ``auto`` is CUDA only
    where the trial holds a share *and* its process sees a CUDA device: whether Ray hides the GPUs
    from a trial without a share has changed between Ray versions (``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO``),
    and the share, not that, decides. A share on a node without CUDA (Ray's logical GPUs) falls back to
    the CPU with a note. ``cuda`` without a CUDA device is a ConfigError naming ``field("device")``
    (``proxy.device`` in a space, ``--device`` on the command line).
    """
    requested = recipe.get("device", "auto")
    available = torch.cuda.is_available()
    note = None
    if requested == "cuda":
        if not available:
            raise ConfigError(f"{field('device')}='cuda': this process sees no CUDA device (torch "
                              f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); allowed here: cpu, auto")
        use_cuda = True
    elif requested == "auto":
        wanted = available if gpu_share is None else gpu_share
        use_cuda = wanted and available
        if wanted and not available:
            note = (f"{field('device')}=auto: this trial holds a GPU share but its process sees no CUDA device; "
                    "it trains on the CPU")
    else:
        use_cuda = False
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    precision = recipe.get("precision", "fp32")
    check_precision(precision, device.type, field("precision"), field("device"))
    channels_last = recipe.get("channels_last", "auto")
    return Placement(device, precision, use_cuda if channels_last == "auto" else bool(channels_last),
                     bool(recipe.get("compile", False)), note)


def check_compile(device: str = "cpu", field: str = "proxy.compile") -> None:
    """ConfigError unless torch can compile (inductor) on ``device`` here: a tiny function compiled
    and run once, so that a missing C++ compiler or Triton is found before the first trial, not in
    every one."""
    try:
        fn = torch.compile(lambda x: torch.relu(x) * 2 + 1, backend="inductor", fullgraph=True)
        fn(torch.randn(8, device=device))
    except Exception as e:  # torch raises many kinds (BackendCompilerFailed, RuntimeError, OSError)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError(f"{field}=true: torch {torch.__version__} cannot compile on {device} here "
                          f"({type(e).__name__}: {first}); allowed: false") from None
