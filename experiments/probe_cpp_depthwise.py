"""Probe: a plain OpenMP C++ NCHW depthwise 3x3 forward against oneDNN (torch's CPU kernel).

    .venv/bin/pip install ninja -c constraints.txt && .venv/bin/python experiments/probe_cpp_depthwise.py

Compiles with torch.utils.cpp_extension.load_inline (about 25 s), checks the result against
F.conv2d, and times both (2 threads, batch 8, medians of 30). Not used by mrla-nas: it measured
whether a hand-written kernel is worth pursuing (experiments/results/speed.md).
"""
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.cpp_extension import load_inline

SRC = r'''
#include <torch/extension.h>
torch::Tensor dw3x3(torch::Tensor x, torch::Tensor w) {
  auto B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto out = torch::empty_like(x);
  const float* xp = x.data_ptr<float>(); const float* wp = w.data_ptr<float>(); float* op = out.data_ptr<float>();
  #pragma omp parallel for schedule(static)
  for (long p = 0; p < B * C; ++p) {
    const float* xi = xp + p * H * W; float* oi = op + p * H * W; const float* k = wp + (p % C) * 9;
    for (long y = 0; y < H; ++y) {
      float* orow = oi + y * W;
      for (long j = 0; j < W; ++j) orow[j] = 0.f;
      for (int ky = 0; ky < 3; ++ky) {
        long yy = y + ky - 1; if (yy < 0 || yy >= H) continue;
        const float* irow = xi + yy * W;
        float k0 = k[ky * 3], k1 = k[ky * 3 + 1], k2 = k[ky * 3 + 2];
        orow[0] += k1 * irow[0] + (W > 1 ? k2 * irow[1] : 0.f);
        #pragma omp simd
        for (long j = 1; j < W - 1; ++j) orow[j] += k0 * irow[j - 1] + k1 * irow[j] + k2 * irow[j + 1];
        if (W > 1) orow[W - 1] += k0 * irow[W - 2] + k1 * irow[W - 1];
      }
    }
  }
  return out;
}
'''


def bench(f, n=30):
    for _ in range(3):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def main():
    torch.set_num_threads(2)
    t = time.time()
    mod = load_inline("mrla_dw_probe", cpp_sources=SRC, functions=["dw3x3"],
                      extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"])
    print(f"compile {time.time() - t:.1f} s")
    for c, h in [(256, 56), (512, 28), (1024, 14), (2048, 7)]:
        x, w = torch.randn(8, c, h, h), torch.randn(c, 1, 3, 3)
        err = (mod.dw3x3(x, w) - F.conv2d(x, w, padding=1, groups=c)).abs().max().item()
        print(f"{c}x{h}x{h}  max err {err:.1e}  oneDNN {bench(lambda: F.conv2d(x, w, padding=1, groups=c)):.2f} ms"
              f"  C++ {bench(lambda: mod.dw3x3(x, w)):.2f} ms")


if __name__ == "__main__":
    main()
