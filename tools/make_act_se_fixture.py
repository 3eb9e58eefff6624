"""Writes tests/fixtures/act_se_parity.safetensors: PyTorch's values for the mobile activations
(relu6, hardsigmoid, hardswish), torchvision's SqueezeExcitation and _make_divisible, read by
tests/engine/test_activations_mobile.cpp and tests/engine/test_squeeze_excitation.cpp.

Usage (from the repository root; needs torch and torchvision on the CPU):
    python tools/make_act_se_fixture.py --out tests/fixtures/act_se_parity.safetensors

Written tensors:
  act.x.f32 / act.x.f64            inputs, including every kink (-3, 0, 3, 6) and points near them
  act.<op>.y.<dt>, act.<op>.g.<dt>  forward, and d/dx of sum(y * act.r) (op: relu6, hardsigmoid,
                                   hardswish; dt: f32, f64); act.r.<dt> the upstream gradient
  se.x, se.r                       SE input [2, 16, 5, 4] and upstream gradient (f64)
  se.fc1.weight, se.fc1.bias,      torchvision's default init under torch.manual_seed(0),
  se.fc2.weight, se.fc2.bias       squeeze channels _make_divisible(16 // 4, 8) = 8
  se.y, se.gx, se.g.<param>        forward and the gradients of sum(y * se.r) (f64)
  make_divisible                   rows (v, divisor, min_value or -1, result), f64
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torchvision.ops.misc import SqueezeExcitation
from torchvision.models._utils import _make_divisible


def write_safetensors(path, tensors, metadata):
    """The safetensors layout: u64 header length, JSON header, raw little-endian data."""
    codes = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = t.detach().cpu().contiguous().numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def activation_values(out):
    kinks = [-3.0, 0.0, 3.0, 6.0, -2.999, 2.999, -3.001, 3.001, -1e-3, 1e-3, 5.999, 6.001, -6.0, 9.0]
    g = torch.Generator().manual_seed(1)
    rest = (torch.rand(50, generator=g, dtype=torch.float64) * 16.0 - 8.0).tolist()
    base = torch.tensor(kinks + rest, dtype=torch.float64)
    r = torch.rand(base.numel(), generator=g, dtype=torch.float64) * 2.0 - 1.0
    for dt, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
        out[f"act.x.{tag}"] = base.to(dt)
        out[f"act.r.{tag}"] = r.to(dt)
        for name, fn in (("relu6", F.relu6), ("hardsigmoid", F.hardsigmoid), ("hardswish", F.hardswish)):
            x = base.to(dt).clone().requires_grad_(True)
            y = fn(x)
            (gx,) = torch.autograd.grad(y, x, r.to(dt))
            out[f"act.{name}.y.{tag}"] = y.detach()
            out[f"act.{name}.g.{tag}"] = gx


def se_values(out):
    torch.manual_seed(0)
    channels = 16
    squeeze = _make_divisible(channels // 4, 8)
    se = SqueezeExcitation(channels, squeeze, scale_activation=torch.nn.Hardsigmoid).double()
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(2, channels, 5, 4, generator=g, dtype=torch.float64) * 6.0 - 3.0).requires_grad_(True)
    r = torch.rand(2, channels, 5, 4, generator=g, dtype=torch.float64) * 2.0 - 1.0
    y = se(x)
    (y * r).sum().backward()
    out["se.x"] = x.detach()
    out["se.r"] = r
    out["se.y"] = y.detach()
    out["se.gx"] = x.grad
    for name, p in se.named_parameters():
        out[f"se.{name}"] = p.detach().clone()
        out[f"se.g.{name}"] = p.grad


def make_divisible_values(out):
    rows = []
    cases = [(16 // 4, 8, None), (72 // 4, 8, None), (120 // 4, 8, None), (480 // 4, 8, None),
             (672 // 4, 8, None), (960 // 4, 8, None), (32 * 0.25, 8, None), (24 * 0.75, 8, None),
             (1280 * 1.0, 8, None), (3.0, 8, None), (11.0, 8, None), (12.0, 8, None), (100.0, 16, 32),
             (10.0, 16, 32), (36.0, 8, None), (37.5, 4, None), (0.5, 8, None)]
    for v, d, m in cases:
        rows.append([float(v), float(d), float(-1 if m is None else m), float(_make_divisible(v, d, m))])
    out["make_divisible"] = torch.tensor(rows, dtype=torch.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torchvision

    out = {}
    activation_values(out)
    se_values(out)
    make_divisible_values(out)
    write_safetensors(args.out, out, {"torch": torch.__version__, "torchvision": torchvision.__version__})
    print(f"wrote {len(out)} tensors to {args.out}")


if __name__ == "__main__":
    main()
