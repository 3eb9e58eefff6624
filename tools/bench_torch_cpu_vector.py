#!/usr/bin/env python3
"""PyTorch's CPU timings of the ops behind bench_kernels' cpu_relu_bwd, cpu_max_pool2d,
cpu_max_pool2d_3x3 and cpu_batch_norm2d rows (apps/bench/rows_cpu_vector.cpp), same shapes, f32, called through the
aten ops' out= variants directly (no autograd, no allocation in the timed call, as in our
rows), so the two tables compare kernel against kernel:

    relu_bwd                threshold_backward(g, y, 0)                 8x64x150x150
    max_pool2d_2x2_fwd      max_pool2d_with_indices(x, 2, 2)            8x64x150x150
    max_pool2d_2x2_bwd      max_pool2d_with_indices_backward            8x64x150x150
    max_pool2d_3x3s2_fwd    max_pool2d_with_indices(x, 3, 2, 1)         4x64x128x128
    batch_norm2d_train_fwd  native_batch_norm(training=True)            8x128x75x75
    batch_norm2d_train_bwd  native_batch_norm_backward (dx, dw, db)     8x128x75x75

Usage: /path/to/torch/python tools/bench_torch_cpu_vector.py [--threads 2] [--reps 10]
A measuring tool only: never a run-time dependency of the engine.
"""
import argparse
import statistics
import sys
import time


def positive(s):
    v = int(s)
    if v <= 0 or v > 10**6:
        raise argparse.ArgumentTypeError(f"{s!r} is not in 1..1000000")
    return v


def timed(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), min(ts), max(ts)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=positive, default=2)
    p.add_argument("--reps", type=positive, default=10)
    a = p.parse_args()
    try:
        import torch
    except ImportError:
        print("bench_torch_cpu_vector: PyTorch is not importable by this python", file=sys.stderr)
        return 1
    torch.set_num_threads(a.threads)
    aten = torch.ops.aten
    g = torch.Generator().manual_seed(0)
    rows = []

    act = torch.randn(8, 64, 150, 150, generator=g)
    y = act.clamp_min(0)
    gr = torch.randn(act.shape, generator=g)
    gx = torch.empty_like(act)
    rows.append(("relu_bwd", "8x64x150x150 f32",
                 lambda: aten.threshold_backward.grad_input(gr, y, 0.0, grad_input=gx)))

    x = torch.randn(8, 64, 150, 150, generator=g)
    out, idx = aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
    gy = torch.randn(out.shape, generator=g)
    o2, i2, gxp = torch.empty_like(out), torch.empty_like(idx), torch.empty_like(x)
    rows.append(("max_pool2d_2x2_fwd", "8x64x150x150 k2 s2 f32",
                 lambda: aten.max_pool2d_with_indices.out(x, [2, 2], [2, 2], [0, 0], [1, 1], False, out=o2,
                                                          indices=i2)))
    rows.append(("max_pool2d_2x2_bwd", "8x64x150x150 k2 s2 f32",
                 lambda: aten.max_pool2d_with_indices_backward.grad_input(gy, x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                          False, idx, grad_input=gxp)))

    x3 = torch.randn(4, 64, 128, 128, generator=g)
    o3, i3 = aten.max_pool2d_with_indices(x3, [3, 3], [2, 2], [1, 1])
    rows.append(("max_pool2d_3x3s2_fwd", "4x64x128x128 k3 s2 p1 f32",
                 lambda: aten.max_pool2d_with_indices.out(x3, [3, 3], [2, 2], [1, 1], [1, 1], False, out=o3,
                                                          indices=i3)))

    xb = torch.randn(8, 128, 75, 75, generator=g)
    w = torch.full((128,), 1.5)
    b = torch.full((128,), 0.25)
    _, mean, invstd = aten.native_batch_norm(xb, w, b, None, None, True, 0.1, 1e-5)
    gb = torch.randn(xb.shape, generator=g)
    yb, m2, s2 = torch.empty_like(xb), torch.empty_like(mean), torch.empty_like(invstd)
    gxb, gw, gbias = torch.empty_like(xb), torch.empty_like(w), torch.empty_like(b)
    rows.append(("batch_norm2d_train_fwd", "8x128x75x75 f32",
                 lambda: aten.native_batch_norm.out(xb, w, b, None, None, True, 0.1, 1e-5, out=yb, save_mean=m2,
                                                    save_invstd=s2)))
    rows.append(("batch_norm2d_train_bwd", "8x128x75x75 f32",
                 lambda: aten.native_batch_norm_backward.out(gb, xb, w, None, None, mean, invstd, True, 1e-5,
                                                             [True, True, True], out0=gxb, out1=gw, out2=gbias)))

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, reps {a.reps}")
    print(f"{'name':24s} {'shape':26s} {'median_ms':>10s} {'min_ms':>10s} {'max_ms':>10s}")
    for name, shape, fn in rows:
        med, lo, hi = timed(fn, a.reps)
        print(f"{name:24s} {shape:26s} {med:10.3f} {lo:10.3f} {hi:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
