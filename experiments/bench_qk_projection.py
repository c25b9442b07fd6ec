"""MRLA's Q/K projections (two bias-free Conv1d over the GAP vector) on CPU: two oneDNN Conv1d
calls vs. one [B, C, k] x [k, 2] product over unfolded windows (what mrla_nas uses outside tracing).

    .venv/bin/python experiments/bench_qk_projection.py

Forward + backward of q*k summed, batch 8, 2 threads, median microseconds over 200 calls.
"""
import statistics
import time

import torch
import torch.nn.functional as F


def timed(fn, n=200):
    for _ in range(20):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def main():
    torch.set_num_threads(2)
    for c, k in [(256, 5), (512, 5), (1024, 5), (2048, 7)]:
        x = torch.randn(8, c, requires_grad=True)
        wq, wk = torch.randn(1, 1, k, requires_grad=True), torch.randn(1, 1, k, requires_grad=True)
        p = (k - 1) // 2

        def conv1d():
            q = F.conv1d(x.unsqueeze(1), wq, padding=p).squeeze(1)
            key = F.conv1d(x.unsqueeze(1), wk, padding=p).squeeze(1)
            (q * key).sum().backward()

        def windows():
            q, key = (F.pad(x, (p, p)).unfold(1, k, 1) @ torch.stack([wq.view(k), wk.view(k)], 1)).unbind(-1)
            (q * key).sum().backward()

        print(f"C={c:5d} k={k}: two Conv1d {timed(conv1d):7.0f} us   one windowed product {timed(windows):7.0f} us")


if __name__ == "__main__":
    main()
