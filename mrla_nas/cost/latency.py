"""What a network costs in time: its latency measured, not predicted, against the space's reference
network (its first backbone choice without MRLA), in one process.

FLOPs hide MRLA's cost (2.5% more FLOPs, 18-24% more training-step time on the default space:
experiments/results/speed.md), so a front on FLOPs calls MRLA nearly free. Times on a shared
machine drift (the same command 1.5x slower from one minute to the next), so each network is timed
*interleaved* with its reference, round by round, in alternating order (ABBA), and the objective
is by default the median of the paired ratios, which the drift cancels out of; the milliseconds are
recorded beside it. torch.utils.benchmark's conventions: untimed warm-up steps, CUDA synchronised
before and after each timing, a fixed thread count, medians over rounds, several steps per timing
so that one timing lasts long enough for the clock.

``mode``: ``train_step`` (forward, cross-entropy, backward and an SGD step: what a search and a
training pay) or ``inference`` (forward in eval mode under ``torch.inference_mode``: what a deployed
network pays).
"""
from __future__ import annotations

import functools
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..models.build import build_model
from ..settings import torch_threads

MIN_TIMING_S = 0.02  # a timing this long at least: several steps of a small network
MAX_STEPS = 64


@dataclass(frozen=True)
class Latency:
    """One network's measured time: ``ms`` per step (median over rounds), its reference's, the median
    paired ratio and its spread (half the interquartile range of the paired ratios)."""

    ms: float
    reference_ms: float
    ratio: float
    spread: float
    rounds: int

    def value(self, metric: str) -> float:
        """The objective's value: the ratio to the reference (default) or the milliseconds."""
        return self.ratio if metric == "ratio" else self.ms

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


def device_label(device: str) -> str:
    """What a run records as where its latencies were measured: the device and the CPU/GPU model."""
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu ({model})"


class _Timed:
    """One network on the device with a fixed batch, timed ``steps`` steps at a time."""

    def __init__(self, model: torch.nn.Module, in_chans: int, num_classes: int, settings: Dict[str, Any]):
        self.device = torch.device(settings["device"])
        self.train = settings["mode"] == "train_step"
        r, b = settings["resolution"], settings["batch_size"]
        gen = torch.Generator().manual_seed(0)
        self.model = model.to(self.device).train(self.train)
        self.x = torch.randn(b, in_chans, r, r, generator=gen).to(self.device)
        self.y = torch.randint(0, num_classes, (b,), generator=gen).to(self.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9) if self.train else None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        self._sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            if self.train:
                loss = F.cross_entropy(self.model(self.x), self.y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
            else:
                with torch.inference_mode():
                    self.model(self.x)
        self._sync()
        return (time.perf_counter() - t0) / steps


def _settings_key(settings: Dict[str, Any]) -> Tuple:
    return tuple(sorted((k, v) for k, v in settings.items() if k != "metric"))


def measure_latency(arch, reference, settings: Dict[str, Any]) -> Latency:
    """``arch``'s latency against ``reference`` under the space's ``latency`` settings, cached by the
    two networks' canonical keys and the settings (one search measures each network once)."""
    return _measure(arch.canonical(), reference.canonical(), _settings_key(settings))


@functools.lru_cache(maxsize=4096)
def _measure(arch, reference, key: Tuple) -> Latency:
    settings = dict(key)
    torch.manual_seed(0)
    mine = build_model(arch)
    ref = build_model(reference) if reference.key() != arch.key() else None
    return time_models(mine, ref, settings, arch.in_chans, arch.num_classes)


def time_models(model: torch.nn.Module, reference: Optional[torch.nn.Module], settings: Dict[str, Any],
                in_chans: int = 3, num_classes: int = 1000) -> Latency:
    """``model``'s latency against ``reference`` (None: it is its own reference), interleaved ABBA."""
    with torch_threads(settings["threads"]):
        mine = _Timed(model, in_chans, num_classes, settings)
        ref = _Timed(reference, in_chans, num_classes, settings) if reference is not None else None
        for net in (mine, ref):
            if net is not None and settings["warmup"]:
                net.run(settings["warmup"])
        probe = (ref or mine).run(1)
        steps = max(1, min(MAX_STEPS, int(MIN_TIMING_S / max(probe, 1e-6)) + 1))
        times, ref_times = [], []
        for r in range(settings["rounds"]):
            if ref is None:
                times.append(mine.run(steps))
                continue
            order = (mine, ref) if r % 2 else (ref, mine)  # ABBA: a drift within a round cancels too
            for net in order:
                (times if net is mine else ref_times).append(net.run(steps))
    if ref is None:  # the reference itself: ratio 1 by definition
        ms = 1000 * statistics.median(times)
        return Latency(ms, ms, 1.0, 0.0, settings["rounds"])
    ratios = sorted(a / b for a, b in zip(times, ref_times))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return Latency(1000 * statistics.median(times), 1000 * statistics.median(ref_times), statistics.median(ratios),
                   (q[2] - q[0]) / 2, settings["rounds"])


def check_latency_device(settings: Optional[Dict[str, Any]], field: str = "latency.device") -> None:
    """ConfigError where latencies are to be measured on CUDA and this process sees none."""
    from ..errors import ConfigError

    if settings and settings["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field}='cuda': the search's driver, which measures every network's latency (so that "
                          "all are timed on one device), sees no CUDA device; allowed here: cpu")
