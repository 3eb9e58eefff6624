#!/usr/bin/env python3
"""PyTorch's CPU conv2d on the shapes of bench_kernels' conv_cpu rows (apps/bench/rows_conv_cpu.cpp).

Prints `name median_ms` lines with the same row names (conv2d_cpu_fc6_fwd, ..._bwd, ...), so a
shell loop can alternate `bench_kernels --device cpu --only conv_cpu` and this script and
compare medians taken in the same minutes. Tool only (never a run-time dependency).
  /path/to/torch-python tools/bench_conv_cpu_torch.py [--threads 2] [--reps 10]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = [  # name, C, O, H, k, stride, pad, dilation (batch 1, f32)
    ("conv2d_cpu_fc6", 512, 1024, 19, 3, 1, 6, 6),
    ("conv2d_cpu_fc6_512", 512, 1024, 32, 3, 1, 6, 6),
    ("conv2d_cpu_conv1_2", 64, 64, 300, 3, 1, 1, 1),
    ("conv2d_cpu_1x1", 1024, 256, 32, 1, 1, 0, 1),
    ("conv2d_cpu_1x1s2", 512, 1024, 64, 1, 2, 0, 1),
]


def median_ms(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    if not 1 <= a.threads <= 256 or not 1 <= a.reps <= 10000:
        ap.error("--threads must be 1..256 and --reps 1..10000")
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(3)
    for name, C, O, H, k, s, p, d in SHAPES:
        x = torch.randn(1, C, H, H, generator=g)
        w = torch.randn(O, C, k, k, generator=g) / (C * k * k) ** 0.5
        b = torch.randn(O, generator=g)
        with torch.no_grad():
            fwd = median_ms(lambda: F.conv2d(x, w, b, s, p, d), a.reps)
        xl, wl, bl = (t.clone().requires_grad_() for t in (x, w, b))
        r = torch.randn(F.conv2d(x, w, b, s, p, d).shape, generator=g)

        def step():
            xl.grad = wl.grad = bl.grad = None
            (F.conv2d(xl, wl, bl, s, p, d) * r).sum().backward()

        bwd = median_ms(step, a.reps)
        print(f"{name}_fwd {fwd:.3f}")
        print(f"{name}_bwd {bwd:.3f}")


if __name__ == "__main__":
    main()
