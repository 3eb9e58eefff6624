#!/usr/bin/env python3
"""End-to-end detection parity fixture: torchvision's ssd300_vgg16 on an image FILE.

Usage (from the repository root; needs torch, torchvision and Pillow on the CPU):

    python3 tools/make_detect_parity.py [--num-classes 5] [--out-dir tests/fixtures/detect_parity]

Writes into --out-dir:
  image.png        a deterministic non-square RGB test picture (PNG, so PIL and stb decode the
                   identical pixels)
  torchvision.json torchvision's detections for that file, computed in float64 (the reference)
                   and in float32 (to measure torch's own float32 drift), plus the figures.

The model is torchvision's ssd300_vgg16(weights=None, weights_backbone=None, num_classes=K)
with every state_dict tensor overwritten by tools/parity_init.parity_init (the formula that
models::parity_init reproduces in C++; values rounded to float32, as ours are). The reference
is torchvision's FULL inference path, model.eval(); model([img]) with img the decoded file as
a float tensor in [0, 1]: GeneralizedRCNNTransform normalises ((x - mean) / std with mean
[0.48235, 0.45882, 0.40784] and std 1/255, i.e. 0..255 minus mean·255), resizes to 300x300
(bilinear, align_corners=False, no antialias), the SSD head and postprocess_detections run
(score > 0.01, top 400 per class, NMS 0.45 per class, keep 200, boxes clipped to 300x300),
and transform.postprocess scales the boxes back by (W/300, H/300).

Picture. Full contrast: every channel is the model's mean colour (mean·255) plus up to
+-127 grey levels (--amplitude) of a smooth gradient, a few flat shapes (a rectangle, a disc,
an ellipse, a stripe) and a 2x2-pixel checker patch, at 360x240 (the resize shrinks x and
stretches y), so the decode and the resize see sharp edges and fine detail as well as smooth areas.
With the parity weights, VGG's conv4_3 cancels heavily, so at this amplitude torch's own float32
result is visibly off its float64 one (the model-level fixture of tools/export_torchvision.py
keeps its input at +-2.54 for that reason); the JSON records how far ("f32_vs_f64_*"), and the
C++ test's tolerances are set from those figures.

Compared detections ("compare": indices into the float64 list, best first): the top --top by
score plus the top --per-label of every label present (the parity weights favour one label for
the best scores; the per-label picks make the label mapping count). Matching is by label and
IoU, never by rank: neighbouring scores can be closer than the float32 drift.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_init import parity_init  # noqa: E402

MEAN = (0.48235, 0.45882, 0.40784)


def make_picture(width, height, amplitude):
    """Deterministic uint8 [H, W, 3]: the model mean colour + a gradient + a few shapes + a
    fine checker (pixel-scale detail, so a resize that antialiases or samples differently
    shows). Shapes are laid out on a 200x150 frame scaled to width x height."""
    ys = torch.arange(height, dtype=torch.float64).view(height, 1) * (150.0 / height)
    xs = torch.arange(width, dtype=torch.float64).view(1, width) * (200.0 / width)
    yi = torch.arange(height).view(height, 1)
    xi = torch.arange(width).view(1, width)
    planes = []
    for c in range(3):
        v = 0.35 * torch.sin(0.045 * xs + 0.9 * c) * torch.cos(0.06 * ys - 0.4 * c)  # smooth background
        v = v + 0.25 * (xs / width - 0.5) * (1 if c != 1 else -1) + 0.2 * (ys / height - 0.5) * (c - 1)
        # a bright rectangle, a dark disc, a coloured ellipse, a diagonal stripe
        rect = ((xs >= 22) & (xs < 78) & (ys >= 18) & (ys < 64)).double()
        v = v + rect * (0.8 if c == 0 else -0.3)
        disc = (((xs - 140) ** 2 + (ys - 95) ** 2) < 30 ** 2).double()
        v = v - disc * (0.7 + 0.1 * c)
        ell = ((((xs - 60) / 34) ** 2 + ((ys - 112) / 18) ** 2) < 1).double()
        v = v + ell * (0.6 if c == 2 else -0.2 * c)
        stripe = ((xs - 1.3 * ys - 95).abs() < 7).double()
        v = v + stripe * (0.5 if c == 1 else 0.1)
        patch = ((xs >= 150) & (xs < 190) & (ys >= 10) & (ys < 40)).double()
        checker = (((xi // 2) + (yi // 2)) % 2).double() * 2 - 1  # 2x2-pixel checker
        v = v * (1 - patch) + patch * 0.9 * checker * (1 if c != 2 else -1)
        v = v.clamp(-1.0, 1.0)
        planes.append(MEAN[c] * 255.0 + amplitude * v)
    img = torch.stack(planes, dim=2).round().clamp(0, 255).to(torch.uint8)
    return img


def build_model(k):
    from torchvision.models.detection import ssd as tv_ssd

    torch.manual_seed(0)  # irrelevant (every tensor is overwritten) but keeps construction quiet
    model = tv_ssd.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=k)
    parity_init(model)  # float32 values, exactly those of models::parity_init
    return model.eval()


def read_png(path):
    """The file as torchvision sees it: float [3, H, W] in [0, 1]."""
    from PIL import Image
    import numpy as np

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def box_iou(a, b):
    from torchvision.ops import box_iou as tv_iou

    return tv_iou(a, b)


def as_list(d):
    return {"boxes": [[float(v) for v in b] for b in d["boxes"].tolist()],
            "scores": [float(s) for s in d["scores"].tolist()],
            "labels": [int(l) for l in d["labels"].tolist()]}


def compare(ref, other, indices):
    """Matches each ref detection in `indices` to one of other's (same label, best IoU, each used
    once); returns the worst figures."""
    worst_iou, worst_ds, worst_rel, unmatched = 1.0, 0.0, 0.0, 0
    used = set()
    for i in indices:
        best, best_j = -1.0, -1
        for j in range(len(other["scores"])):
            if j in used or other["labels"][j] != ref["labels"][i]:
                continue
            iou = box_iou(torch.tensor([ref["boxes"][i]], dtype=torch.float64),
                          torch.tensor([other["boxes"][j]], dtype=torch.float64)).item()
            if iou > best:
                best, best_j = iou, j
        if best_j < 0 or best < 0.5:
            unmatched += 1
            continue
        used.add(best_j)
        ds = abs(other["scores"][best_j] - ref["scores"][i])
        worst_iou = min(worst_iou, best)
        worst_ds = max(worst_ds, ds)
        worst_rel = max(worst_rel, ds / max(ref["scores"][i], 1e-12))
    return {"compared": len(indices), "unmatched": unmatched, "min_iou": worst_iou, "max_abs_score_diff": worst_ds,
            "max_rel_score_diff": worst_rel}


def compare_set(d, top, per_label):
    """Indices (best first) of the top `top` detections plus the top `per_label` of each label."""
    picked = set(range(min(top, len(d["scores"]))))
    for lab in sorted(set(d["labels"])):
        picked.update([i for i, l in enumerate(d["labels"]) if l == lab][:per_label])
    return sorted(picked)


def min_gap(scores, indices):
    """Smallest score difference between a compared detection and any other detection."""
    return min(abs(scores[i] - scores[j]) for i in indices for j in range(len(scores)) if j != i)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-classes", type=int, default=5)
    p.add_argument("--width", type=int, default=360)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--amplitude", type=float, default=127.0,
                   help="grey levels around the mean colour (see the module docstring)")
    p.add_argument("--top", type=int, default=20, help="best detections the C++ test compares one to one")
    p.add_argument("--per-label", type=int, default=5, help="and the best of each label")
    p.add_argument("--out-dir", default="tests/fixtures/detect_parity")
    args = p.parse_args()

    import torchvision
    from PIL import Image

    os.makedirs(args.out_dir, exist_ok=True)
    png = os.path.join(args.out_dir, "image.png")
    pic = make_picture(args.width, args.height, args.amplitude)
    Image.fromarray(pic.numpy()).save(png, optimize=True)

    u8 = read_png(png)
    assert torch.equal(u8, pic.permute(2, 0, 1)), "PNG round trip is not lossless"
    img = u8.double() / 255.0

    model = build_model(args.num_classes)
    with torch.no_grad():
        d64 = as_list(model.double()([img])[0])
        d32 = as_list(model.float()([img.float()])[0])

    pick = compare_set(d64, args.top, args.per_label)
    drift = compare(d64, d32, pick)
    drift_all = compare(d64, d32, list(range(len(d64["scores"]))))
    s = d64["scores"]
    out = {
        "model": "ssd300_vgg16",
        "num_classes": args.num_classes,
        "image": "image.png",
        "width": args.width,
        "height": args.height,
        "amplitude": args.amplitude,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pipeline": "model.eval(); model([read_png(file) / 255]) (GeneralizedRCNNTransform + postprocess)",
        "compare": pick,
        "reference_dtype": "float64",
        "labels_note": "torchvision labels: model class index (1..K-1); ssd_detect category_id = label",
        "float64": d64,
        "float32": d32,
        "f32_vs_f64_compared": drift,
        "f32_vs_f64_all": drift_all,
        "compared_min_score_gap": min_gap(s, pick),
    }
    path = os.path.join(args.out_dir, "torchvision.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {png} ({os.path.getsize(png)} bytes) and {path} ({os.path.getsize(path)} bytes)")
    print(f"{len(s)} detections (float64), {len(d32['scores'])} (float32); scores {s[0]:.6f} .. {s[-1]:.6f}")
    print(f"compared: {len(pick)} detections, labels {[d64['labels'][i] for i in pick]}, "
          f"scores down to {min(s[i] for i in pick):.6f}")
    print(f"smallest score gap between a compared detection and any other: {out['compared_min_score_gap']:.3g}")
    print("torch float32 vs float64, compared:", drift)
    print("torch float32 vs float64, all:", drift_all)
    if out["compared_min_score_gap"] <= 0 or drift["unmatched"]:
        raise SystemExit("degenerate reference (tied scores or unmatched float32 detections): change the picture")


if __name__ == "__main__":
    main()
