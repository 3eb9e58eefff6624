#!/usr/bin/env python3
"""Parity fixture for the GluonCV ResNet backbones (tests/models/test_gluon_resnet.cpp).

Usage (from the repository root; torch and torchvision, CPU):

    python tools/make_gluon_resnet_fixture.py --out tests/fixtures/gluon_resnet_parity.safetensors

There is no MXNet here, so the reference is a PyTorch twin of GluonCV's resnet.py layouts
written for this script (BasicBlockV1, BottleneckV1 with the stride in the first 1x1 and
biases on its two 1x1 convs, pre-activation BottleneckV2, the v2 data BatchNorm without
gamma/beta), truncated at the last SSD source exactly as models/gluon_resnet.h describes, and
with the same parameter names and state_dict order as the C++ module. Weights and running
statistics come from tools/parity_init.parity_init (the formula of models::parity_init), so
no weights are stored. Computed in float64, stored as float32.

Written tensors (F32):
  input                      [1, 3, S, S], a smooth pattern (S = 66: odd sizes 33, 17, 9, 5, 3
                             on the way down exercise the ceil rounding), shared by the nets
  <net>.source{i}            the source maps in EVAL mode (BatchNorm on running statistics)
  <net>.train.input          resnet50_v1 and resnet101_v2: [2, 3, 34, 34]; .train.layer2_0: the
                             TRAIN-mode output of stem + layer1 + layer2.0 (batch statistics),
                             and .train.<buffer> for a few running-stat buffers after that
                             forward (the momentum-0.1 update, unbiased variance)
__metadata__: nets, input_size, per net <net>.state_dict_keys, <net>.num_params,
<net>.source_names (JSON lists), and tv.resnet18 / tv.resnet50: torchvision's state_dict keys
and shapes (JSON [[name, shape], ...]) for the test that loads torchvision-named tensors.
"""
import argparse
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import _versions, save, smooth_input  # noqa: E402
from parity_init import parity_init  # noqa: E402

# name -> (version, bottleneck, blocks per stage, channels, sources as (stage, activation))
SPECS = {
    "resnet18_v1": (1, False, [2, 2, 2, 2], [64, 64, 128, 256, 512], [(3, 1), (4, 1)]),
    "resnet50_v1": (1, True, [3, 4, 6, 3], [64, 256, 512, 1024, 2048], [(3, 5), (4, 2)]),
    "resnet101_v2": (2, True, [3, 4, 23, 3], [64, 256, 512, 1024, 2048], [(3, 22), (4, 2)]),
    "resnet152_v2": (2, True, [3, 8, 36, 3], [64, 256, 512, 1024, 2048], [(2, 7), (3, 35), (4, 2)]),
}


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class BasicV1(nn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = bn(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = bn(c)
        self.downsample = None
        if cin != c or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, 0, bias=False), bn(c))

    def forward(self, x, acts):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = torch.relu(y + (self.downsample(x) if self.downsample is not None else x))
        acts.append(y)
        return y


class BottleV1(nn.Module):
    """GluonCV BottleneckV1: 1x1 (stride, bias) -> 3x3 (no bias) -> 1x1 (bias)."""

    def __init__(self, cin, c, stride):
        super().__init__()
        m = c // 4
        self.conv1 = nn.Conv2d(cin, m, 1, stride, 0, bias=True)
        self.bn1 = bn(m)
        self.conv2 = nn.Conv2d(m, m, 3, 1, 1, bias=False)
        self.bn2 = bn(m)
        self.conv3 = nn.Conv2d(m, c, 1, 1, 0, bias=True)
        self.bn3 = bn(c)
        self.downsample = None
        if cin != c or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, 0, bias=False), bn(c))

    def forward(self, x, acts):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        y = torch.relu(y + (self.downsample(x) if self.downsample is not None else x))
        acts.append(y)
        return y


class BottleV2(nn.Module):
    """GluonCV BottleneckV2 (pre-activation), optionally cut after activation `cut`."""

    def __init__(self, cin, c, stride, cut=-1):
        super().__init__()
        m = c // 4
        self.cut = cut
        self.bn1 = bn(cin)
        if cut < 0 or cut >= 1:
            self.conv1 = nn.Conv2d(cin, m, 1, 1, 0, bias=False)
            self.bn2 = bn(m)
        if cut < 0 or cut >= 2:
            self.conv2 = nn.Conv2d(m, m, 3, stride, 1, bias=False)
            self.bn3 = bn(m)
        self.downsample = None
        if cut < 0:
            self.conv3 = nn.Conv2d(m, c, 1, 1, 0, bias=False)
            if cin != c or stride != 1:
                self.downsample = nn.Conv2d(cin, c, 1, stride, 0, bias=False)

    def forward(self, x, acts):
        p = torch.relu(self.bn1(x))
        acts.append(p)
        if self.cut == 0:
            return p
        y = torch.relu(self.bn2(self.conv1(p)))
        acts.append(y)
        if self.cut == 1:
            return y
        y = torch.relu(self.bn3(self.conv2(y)))
        acts.append(y)
        if self.cut == 2:
            return y
        return self.conv3(y) + (self.downsample(p) if self.downsample is not None else x)


class Twin(nn.Module):
    def __init__(self, name):
        super().__init__()
        version, bottleneck, blocks, ch, sources = SPECS[name]
        self.sources = sources
        if version == 2:
            self.bn_data = nn.BatchNorm2d(3, eps=1e-5, momentum=0.1, affine=False)
        self.conv1 = nn.Conv2d(3, ch[0], 7, 2, 3, bias=False)
        self.bn1 = bn(ch[0])
        last_stage, last_act = sources[-1]
        per = 3 if version == 2 else 1
        self.stages = []
        for k in range(1, last_stage + 1):
            n = blocks[k - 1]
            cut = -1
            if k == last_stage:
                n = last_act // per + 1
                if version == 2:
                    cut = last_act % 3
            mods = []
            for b in range(n):
                cin = ch[k - 1] if b == 0 else ch[k]
                stride = 2 if (b == 0 and k > 1) else 1
                if version == 2:
                    mods.append(BottleV2(cin, ch[k], stride, cut if b == n - 1 else -1))
                elif bottleneck:
                    mods.append(BottleV1(cin, ch[k], stride))
                else:
                    mods.append(BasicV1(cin, ch[k], stride))
            seq = nn.Sequential(*mods)
            setattr(self, f"layer{k}", seq)
            self.stages.append(seq)

    def forward(self, x):
        if hasattr(self, "bn_data"):
            x = self.bn_data(x)
        y = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        out = {}
        for k, seq in enumerate(self.stages, start=1):
            acts = []
            for blk in seq:
                y = blk(y, acts)
            for i, (s, a) in enumerate(self.sources):
                if s == k:
                    out[i] = acts[a]
        return [out[i] for i in range(len(self.sources))]


TRAIN_SIZE = 34  # 34 -> 17 -> 9 at layer2.0

# Nets checked in train mode, and the running-stat buffers compared after that forward.
TRAIN_NETS = {
    "resnet50_v1": ["bn1.running_mean", "layer1.0.bn3.running_var", "layer2.0.bn1.running_var",
                    "layer2.0.downsample.1.running_mean"],
    "resnet101_v2": ["bn_data.running_mean", "bn_data.running_var", "bn1.running_var", "layer2.0.bn3.running_mean"],
}


def shallow(net, x):
    """stem, every block of layer1, then layer2.0 (the first strided block)."""
    if hasattr(net, "bn_data"):
        x = net.bn_data(x)
    y = torch.max_pool2d(torch.relu(net.bn1(net.conv1(x))), 3, 2, 1)
    for blk in list(net.layer1) + [net.layer2[0]]:
        y = blk(y, [])
    return y


def tv_keys(arch):
    import torchvision

    m = getattr(torchvision.models, arch)(weights=None)
    return json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=66)
    args = p.parse_args()
    S = args.size
    tensors, meta = {}, {"nets": json.dumps(list(SPECS)), "input_size": S, **_versions()}
    x = smooth_input(S, amplitude=1.0)
    tensors["input"] = x
    for name in SPECS:
        torch.manual_seed(0)
        net = Twin(name)
        parity_init(net)
        net.double().eval()
        with torch.no_grad():
            outs = net(x.double())
        for i, o in enumerate(outs):
            tensors[f"{name}.source{i}"] = o
        meta[f"{name}.state_dict_keys"] = json.dumps(list(net.state_dict()))
        meta[f"{name}.num_params"] = sum(q.numel() for q in net.parameters())
        meta[f"{name}.source_names"] = json.dumps([f"stage{s}_activation{a}" for s, a in net.sources])
        print(name, [tuple(o.shape) for o in outs], meta[f"{name}.num_params"])
        if name in TRAIN_NETS:
            # Train mode, batch 2, on the shallow part only (stem, layer1, layer2.0): batch
            # statistics and the running-stat update. Deeper, train-mode BN on these maps is so
            # ill-conditioned that float32 torch itself differs from float64 by ~10% at the
            # sources, so a full-depth train-mode comparison could not be tight.
            xs = smooth_input(TRAIN_SIZE, amplitude=1.0)
            xt = torch.cat([xs, -0.5 * xs.flip(3)], 0)
            net.train()
            with torch.no_grad():
                y = shallow(net, xt.double())
            tensors[f"{name}.train.input"] = xt
            tensors[f"{name}.train.layer2_0"] = y
            for b in TRAIN_NETS[name]:
                tensors[f"{name}.train.{b}"] = net.state_dict()[b]
    meta["tv.resnet18"] = tv_keys("resnet18")
    meta["tv.resnet50"] = tv_keys("resnet50")
    save(args.out, tensors, meta)
    print(f"wrote {args.out}: {len(tensors)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
