"""Writes tests/fixtures/roi_align_parity.safetensors: torchvision's values for RoIAlign, its
level mapper and MultiScaleRoIAlign, read by tests/ops/test_roi_align.cpp.

Usage (from the repository root; needs torch and torchvision on the CPU):
    python tools/make_roi_align_fixture.py --out tests/fixtures/roi_align_parity.safetensors

Written tensors:
  ra.x [2, 3, 10, 12] f64, ra.rois [K, 5] f64   features and RoIs (boxes inside, partly and
                                                entirely outside the map, zero-size and
                                                reversed boxes, a large box for the adaptive grid)
  ra.r [K, 3, 5, 4] f64                         upstream gradient
  ra.<case>.y, ra.<case>.gx                     torchvision.ops.roi_align(x, rois, (5, 4), 0.5, sr,
                                                aligned) and d/dx of sum(y * r); <case> is
                                                a<0|1>_sr<2|0> (aligned, sampling ratio)
  lm.rois [M, 5] f32, lm.levels [M] i64         LevelMapper(k_min 2, k_max 5) of torchvision
  ms.x<l> [2, 2, 32 >> l, 32 >> l] f32, l < 4   levels '0'..'3' of a 128 x 128 image
  ms.rois [R, 5] f32, ms.r [R, 2, 7, 7] f32     RoIs (in image order) and upstream gradient
  ms.c<s>.y, ms.c<s>.gx<l>                      MultiScaleRoIAlign(['0'..'3'], 7, 2,
                                                canonical_scale s) output and d/dx<l> of
                                                sum(y * r), s in (224, 32)
"""
import argparse
import json

import torch
import torchvision
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper


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


def roi_align_values(out, g):
    x = torch.rand(2, 3, 10, 12, generator=g, dtype=torch.float64) * 2.0 - 1.0
    # Image coordinates at spatial_scale 0.5: the map covers [0, 24) x [0, 20).
    rois = torch.tensor([
        [0, 2.0, 3.0, 15.0, 11.0],      # inside
        [1, 0.0, 0.0, 23.0, 19.0],      # the whole map
        [0, -6.0, -4.0, 8.0, 6.0],      # partly outside (top left)
        [1, 18.0, 14.0, 30.0, 27.0],    # partly outside (bottom right)
        [0, 5.0, 5.0, 5.0, 5.0],        # zero size
        [1, 7.0, 2.0, 7.0, 12.0],       # zero width
        [0, 9.0, 8.0, 4.0, 3.0],        # reversed (x2 < x1, y2 < y1)
        [1, 40.0, 40.0, 60.0, 50.0],    # entirely outside (beyond the far corner)
        [0, -30.0, -20.0, -10.0, -5.0],  # entirely outside (before the origin)
        [1, 1.3, 2.7, 3.1, 3.9],        # smaller than a pixel
        [0, -3.0, 1.0, 40.0, 17.5],     # wider than the map: adaptive grid > 2
        [1, 3.25, 1.75, 21.5, 18.25],   # fractional
        [0, 22.0, 18.0, 23.9, 19.9],    # at the last pixel
        [1, -2.5, -2.5, -0.5, 2.0],     # within the -1 border band
    ], dtype=torch.float64)
    r = torch.rand(rois.shape[0], 3, 5, 4, generator=g, dtype=torch.float64) * 2.0 - 1.0
    out["ra.x"], out["ra.rois"], out["ra.r"] = x, rois, r
    for aligned in (False, True):
        for sr in (2, 0):
            xg = x.clone().requires_grad_(True)
            y = roi_align(xg, rois, (5, 4), spatial_scale=0.5, sampling_ratio=sr, aligned=aligned)
            (y * r).sum().backward()
            tag = f"ra.a{int(aligned)}_sr{sr}"
            out[f"{tag}.y"] = y.detach()
            out[f"{tag}.gx"] = xg.grad


def level_mapper_values(out):
    sides = [1.0, 8.0, 56.0, 111.9, 112.0, 112.1, 150.0, 223.9, 224.0, 224.1, 300.0, 447.9, 448.0, 448.1, 600.0,
             1000.0]
    rows = []
    for i, s in enumerate(sides):
        rows.append([0, 10.0, 20.0, 10.0 + s, 20.0 + s])          # square
        rows.append([0, 5.0, 5.0, 5.0 + 2.0 * s, 5.0 + 0.5 * s])  # 4:1, same area
    rows.append([0, 3.0, 3.0, 3.0, 9.0])  # zero area
    rois = torch.tensor(rows, dtype=torch.float32)
    mapper = LevelMapper(2, 5, canonical_scale=224, canonical_level=4, eps=1e-6)
    out["lm.rois"] = rois
    out["lm.levels"] = mapper([rois[:, 1:]])


def multiscale_values(out, g):
    feats = {str(l): torch.rand(2, 2, 32 >> l, 32 >> l, generator=g) * 2.0 - 1.0 for l in range(4)}
    boxes = []
    for n in range(2):
        xy = torch.rand(12, 2, generator=g) * 100.0 - 10.0
        wh = torch.exp(torch.rand(12, 2, generator=g) * 5.0)  # 1 .. 148 pixels
        b = torch.cat([xy, xy + wh], dim=1)
        boxes.append(b)
    rois = torch.cat([torch.cat([torch.full((b.shape[0], 1), float(n)), b], dim=1) for n, b in enumerate(boxes)])
    r = torch.rand(rois.shape[0], 2, 7, 7, generator=g) * 2.0 - 1.0
    for l in range(4):
        out[f"ms.x{l}"] = feats[str(l)]
    out["ms.rois"], out["ms.r"] = rois, r
    for cs in (224, 32):
        pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2, canonical_scale=cs)
        xs = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
        y = pooler(xs, boxes, [(128, 128), (128, 128)])
        (y * r).sum().backward()
        out[f"ms.c{cs}.y"] = y.detach()
        for l in range(4):
            out[f"ms.c{cs}.gx{l}"] = xs[str(l)].grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(15)
    out = {}
    roi_align_values(out, g)
    level_mapper_values(out)
    multiscale_values(out, g)
    write_safetensors(args.out, out, {"torch": torch.__version__, "torchvision": torchvision.__version__})
    print(f"wrote {len(out)} tensors to {args.out}")


if __name__ == "__main__":
    main()
