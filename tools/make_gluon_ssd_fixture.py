#!/usr/bin/env python3
"""Parity fixture for a whole GluonCV SSD preset (tests/models/test_gluon_ssd_parity.cpp).

Usage (from the repository root; torch and torchvision, CPU):

    python tools/make_gluon_ssd_fixture.py --out tests/fixtures/ssd512_resnet50_v1_parity.safetensors

There is no MXNet here, so the reference is a PyTorch twin of GluonCV's `ssd_512_resnet50_v1`
(gluoncv/model_zoo/ssd/ssd.py, presets.py, nn/feature.py, anchor.py) written for this script:

  backbone           the GluonCV ResNet-50 v1 twin of tools/make_gluon_resnet_fixture.py
                     (sources stage3_activation5, stage4_activation2), imported from there
  expand.{i}         FeatureExpander: 1x1 transition (no bias) + BatchNorm + ReLU, then 3x3
                     stride 2 pad 1 (no bias) + BatchNorm + ReLU; widths 512, 512, 256, 256,
                     transitions max(128, width). The BatchNorms are MXNet symbol BatchNorms
                     with their defaults: eps 1e-3 and fix_gamma=True, i.e. gamma is the
                     constant 1 whatever is stored (kept as a buffer named "weight", as in
                     models/gluon_ssd.h); beta is learned.
  class_predictors.{k} / box_predictors.{k}
                     3x3 pad 1 convs with bias -> A_k * C and A_k * 4 channels, A = 4 6 6 6 4 4.

The module tree has the names and the state_dict ORDER of the C++ GluonSSD (parameters of a
module, then its buffers, then its children; the fixed gamma being a buffer, a FeatureExpander
BatchNorm lists bias, weight, running_mean, running_var, num_batches_tracked). Weights come
from tools/parity_init.parity_init (the formula of models::parity_init), after which every
fixed gamma is reset to 1 (the only value it ever holds), so no weights are stored. Computed
in float64 in eval mode (BatchNorm on running statistics), stored as float32.

Heads use torchvision's flattened layout (GluonCV's too): NCHW -> NHWC -> [N, H*W*A_k, K],
levels concatenated. Anchors are computed here from GluonCV's SSDAnchorGenerator formula
(pixels, no clipping): per location (y, x) with centre ((x + 0.5) step, (y + 0.5) step) the
boxes [s, s], [sqrt(s s'), sqrt(s s')], then s with each ratio r of ratios[1:]
(w = s sqrt(r), h = s / sqrt(r)); the preset's sizes and steps are at 512, so at an input
size S both scale by S / 512 (what models::GluonSSD does). Stored as corners
(x1, y1, x2, y2).

Written tensors (F32 unless noted):
  input                  [1, 3, S, S] a smooth pattern in normalised units (S = 128)
  head.box_regression    [1, A, 4]
  head.class_logits      [1, A, C]
  anchors.voc, anchors.coco  [A, 4] (GluonCV's _voc and _coco sizes differ for resnet50_v1)
  feature.{0..5}         the six maps the predictors read (for locating a mismatch)
  targets.boxes [G, 4] (pixels), targets.labels [G] (I64, 1..C-1): given targets for the loss
__metadata__: arch, input_size, num_classes, state_dict_keys (JSON), num_params,
feature_sizes (JSON), versions.
"""
import argparse
import json
import math
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import _versions, save, smooth_input  # noqa: E402
from make_gluon_resnet_fixture import Twin as GluonResNetTwin  # noqa: E402
from parity_init import parity_init  # noqa: E402

# gluoncv/model_zoo/ssd/ssd.py: ssd_512_resnet50_v1_{voc,coco}
PRESET = {
    "arch": "ssd512_resnet50_v1",
    "backbone": "resnet50_v1",
    "base_size": 512,
    "source_channels": [1024, 2048],
    "filters": [512, 512, 256, 256],
    "sizes": {
        "voc": [51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492],
        "coco": [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72],
    },
    "ratios": [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2,
    "steps": [16, 32, 64, 128, 256, 512],
}


class FixedGammaBN(nn.Module):
    """MXNet BatchNorm(fix_gamma=True, eps=1e-3): gamma is 1, beta learned."""

    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("weight", torch.ones(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        assert not self.training, "the twin runs in eval mode only"
        gamma = torch.ones_like(self.bias)  # fix_gamma: the stored value is ignored
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, gamma, self.bias, False, 0.0, 1e-3)


class ExpanderBlock(nn.Module):
    def __init__(self, cin, trans, out):
        super().__init__()
        self.trans_conv = nn.Conv2d(cin, trans, 1, 1, 0, bias=False)
        self.trans_bn = FixedGammaBN(trans)
        self.conv = nn.Conv2d(trans, out, 3, 2, 1, bias=False)
        self.bn = FixedGammaBN(out)

    def forward(self, x):
        h = torch.relu(self.trans_bn(self.trans_conv(x)))
        return torch.relu(self.bn(self.conv(h)))


class GluonSSDTwin(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = GluonResNetTwin(PRESET["backbone"])
        ch = list(PRESET["source_channels"])
        self.expand = nn.ModuleList()
        for f in PRESET["filters"]:
            self.expand.append(ExpanderBlock(ch[-1], max(128, f), f))
            ch.append(f)
        anchors_per = [len(r) + 1 for r in PRESET["ratios"]]
        self.class_predictors = nn.ModuleList(
            nn.Conv2d(c, a * num_classes, 3, 1, 1) for c, a in zip(ch, anchors_per))
        self.box_predictors = nn.ModuleList(nn.Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(ch, anchors_per))

    def features(self, x):
        feats = list(self.backbone(x))
        for blk in self.expand:
            feats.append(blk(feats[-1]))
        return feats

    def forward(self, x):
        feats = self.features(x)

        def flat(maps, k):  # NCHW -> NHWC -> [N, H W A, k]
            return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, k) for m in maps], 1)

        box = flat([p(f) for p, f in zip(self.box_predictors, feats)], 4)
        cls = flat([p(f) for p, f in zip(self.class_predictors, feats)], self.num_classes)
        return feats, box, cls


def gluon_anchors(fmap_sizes, sizes, ratios, steps):
    """SSDAnchorGenerator per level, concatenated; corners in pixels, not clipped."""
    out = []
    for k, n in enumerate(fmap_sizes):
        s0, s1 = sizes[k], math.sqrt(sizes[k] * sizes[k + 1])
        for i in range(n):
            for j in range(n):
                cy, cx = (i + 0.5) * steps[k], (j + 0.5) * steps[k]
                whs = [(s0, s0), (s1, s1)] + [(s0 * math.sqrt(r), s0 / math.sqrt(r)) for r in ratios[k][1:]]
                for w, h in whs:
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(out, dtype=torch.float64)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=5, help="background included")
    args = p.parse_args()
    S, C = args.size, args.num_classes

    torch.manual_seed(0)
    net = GluonSSDTwin(C)
    parity_init(net)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.startswith("expand.") and name.endswith("bn.weight"):
                t.fill_(1.0)  # the fixed gamma
    net.double().eval()
    x = smooth_input(S, amplitude=1.0)
    with torch.no_grad():
        feats, box, cls = net(x.double())
    fmap = [f.shape[-1] for f in feats]
    r = S / PRESET["base_size"]
    steps = [st * r for st in PRESET["steps"]]
    tensors = {"input": x, "head.box_regression": box, "head.class_logits": cls}
    for preset, sizes in PRESET["sizes"].items():
        tensors[f"anchors.{preset}"] = gluon_anchors(fmap, [s * r for s in sizes], PRESET["ratios"], steps)
        assert tensors[f"anchors.{preset}"].shape[0] == box.shape[1]
    for i, f in enumerate(feats):
        tensors[f"feature.{i}"] = f
    # Given targets (pixels at S, labels 1..C-1): two objects of different sizes.
    tensors["targets.boxes"] = torch.tensor([[0.10, 0.15, 0.55, 0.70], [0.50, 0.30, 0.95, 0.90]],
                                            dtype=torch.float64) * S
    tensors["targets.labels"] = torch.tensor([1, C - 1], dtype=torch.int64)
    meta = {
        "arch": PRESET["arch"],
        "input_size": S,
        "num_classes": C,
        "state_dict_keys": json.dumps(list(net.state_dict())),
        "num_params": sum(q.numel() for q in net.parameters()),
        "feature_sizes": json.dumps(fmap),
        **_versions(),
    }
    save(args.out, tensors, meta)
    print(f"{PRESET['arch']} at {S}: maps {fmap}, {box.shape[1]} anchors, {meta['num_params']} parameters, "
          f"|box| max {box.abs().max().item():.4g}, |cls| max {cls.abs().max().item():.4g}")
    print(f"wrote {args.out}: {len(tensors)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
