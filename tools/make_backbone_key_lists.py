#!/usr/bin/env python3
"""Key/shape lists of torchvision's ImageNet classifiers, for the --backbone layout tests
(tests/models/test_backbone_weights.cpp).

Usage (from the repository root; torch + torchvision, no download: the models are built
WITHOUT weights, whose state dicts have the same keys, shapes and order as the published
IMAGENET1K files):

    python tools/make_backbone_key_lists.py --out tests/fixtures/backbone_keys

Writes <model>.txt for vgg16, resnet50 and mobilenet_v3_large: one line per state_dict
entry, "<key> <dtype> <d0,d1,...>" (dtype f32 or i64; an empty shape list for 0-dim
tensors), in state_dict order. The test builds a safetensors file with these names and
shapes and loads it into the detector as `ssd_train --backbone` does. Also prints, for the
record, the parameter count of ssdlite320_mobilenet_v3_large with the full MobileNetV3 tail
(what torchvision builds when weights_backbone is given) at 91 classes.
"""
import argparse
import os
from functools import partial

import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection import ssdlite
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator


def write(model, path):
    with open(path, "w") as f:
        for k, v in model.state_dict().items():
            dtype = {torch.float32: "f32", torch.int64: "i64"}[v.dtype]
            f.write(f"{k} {dtype} {','.join(str(d) for d in v.shape)}\n")


def full_tail_ssdlite_params():
    # ssdlite320_mobilenet_v3_large(weights_backbone=...) without the download: the same calls.
    norm = partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.03)
    bb = torchvision.models.mobilenet_v3_large(norm_layer=norm, reduced_tail=False)
    bb = ssdlite._mobilenet_extractor(bb, 6, norm)
    anchors = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    out = det_utils.retrieve_out_channels(bb, (320, 320))
    head = ssdlite.SSDLiteHead(out, anchors.num_anchors_per_location(), 91, norm)
    m = ssdlite.SSD(bb, anchors, (320, 320), 91, head=head)
    return sum(p.numel() for p in m.parameters()), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    write(torchvision.models.vgg16(), os.path.join(a.out, "vgg16.txt"))
    write(torchvision.models.resnet50(), os.path.join(a.out, "resnet50.txt"))
    write(torchvision.models.mobilenet_v3_large(), os.path.join(a.out, "mobilenet_v3_large.txt"))
    n, out = full_tail_ssdlite_params()
    print(f"ssdlite320_mobilenet_v3_large, full tail, 91 classes: {n} parameters, source channels {out}")


if __name__ == "__main__":
    main()
