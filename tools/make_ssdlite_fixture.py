#!/usr/bin/env python3
"""Parity fixture for ssdlite320_mobilenet_v3_large (tests/models/test_ssdlite.cpp).

Usage (from the repository root; torch, torchvision, CPU):

    python tools/make_ssdlite_fixture.py --num-classes 5 \
        --out tests/fixtures/ssdlite320_mobilenet_v3_large_parity.safetensors

Builds torchvision's ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
num_classes=K), overwrites every state_dict tensor with tools/parity_init.parity_init (the
formula of models::parity_init, so no weights are stored: the fixture stays small), converts
to float64 (the reference carries no float32 rounding; stored as float32) and puts the model
in EVAL mode: BatchNorm uses the running statistics (parity_init values). Train-mode BN cannot
run here: the last extra block's map is 1x1, and torch refuses batch statistics over a single
value per channel for a batch of one. The loss and gradients are those of the eval-mode
forward, which checks the matcher, the encoding, the hard-negative mining and the backward.

Bypassing GeneralizedRCNNTransform (the stored input is already normalised: a smooth pattern
in [-1, 1], as (pixel - 127.5) / 127.5 gives), it calls the model's pieces as SSD.forward does:
    features   = list(model.backbone(x).values())
    head       = model.head(features)
    anchors    = model.anchor_generator(ImageList(x, [(320, 320)]), features)
    matched    = model.proposal_matcher(box_iou(gt_boxes, anchors[0]))
    losses     = model.compute_loss(targets, head, anchors, [matched]); backward
    detections = model.postprocess_detections(head, anchors, [(320, 320)])

Written tensors (F32 unless noted): input, head.bbox_regression, head.cls_logits, anchors,
feature.{0..5} (the six source maps), targets.boxes, targets.labels (I64),
loss.classification, loss.bbox_regression, grad.<name>, det.{boxes,scores,labels}.
__metadata__: model, num_classes, input_size, num_params_91 (torchvision's count at 91
classes), versions, grad_names and state_dict_keys (JSON lists).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import _versions, save, smooth_input  # noqa: E402
from parity_init import parity_init  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-classes", type=int, default=5)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from torchvision.models.detection import ssdlite
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import boxes as box_ops

    K, S = args.num_classes, 320
    torch.manual_seed(0)
    n91 = sum(q.numel() for q in ssdlite.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                      num_classes=91).parameters())
    model = ssdlite.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K)
    parity_init(model)
    model.double().eval()
    x = smooth_input(S, amplitude=1.0)
    x64 = x.double()
    features = list(model.backbone(x64).values())
    head = model.head(features)
    anchors = model.anchor_generator(ImageList(x64, [(S, S)]), features)
    # Each GT has a single best anchor and no IoU within 1e-3 of 0.5: with ties (a small box
    # inside several equal anchors), float32 and float64 pick different forced matches and the
    # loss differs by 4e-4 even in torch itself.
    gt_boxes = torch.tensor([[40.0, 50.0, 150.0, 180.0], [160.0, 30.0, 300.0, 130.0], [100.0, 190.0, 190.0, 280.0],
                             [215.0, 180.0, 262.0, 243.0]], dtype=torch.float64)
    gt_labels = torch.tensor([1, 3, K - 1, 2], dtype=torch.int64)
    targets = [{"boxes": gt_boxes, "labels": gt_labels}]
    matched = [model.proposal_matcher(box_ops.box_iou(gt_boxes, anchors[0]))]
    losses = model.compute_loss(targets, head, anchors, matched)
    (losses["classification"] + losses["bbox_regression"]).backward()
    grad_names = ["backbone.features.0.4.block.2.fc1.weight", "backbone.features.0.13.0.weight",
                  "backbone.features.1.0.1.0.weight", "backbone.features.1.0.2.fc2.bias",
                  "backbone.features.1.3.1.weight", "backbone.extra.0.1.0.weight", "backbone.extra.3.2.1.bias",
                  "head.classification_head.module_list.0.1.weight", "head.classification_head.module_list.5.0.0.weight",
                  "head.regression_head.module_list.1.1.bias", "head.regression_head.module_list.3.0.1.weight"]
    params = dict(model.named_parameters())
    out = {"input": x, "head.bbox_regression": head["bbox_regression"], "head.cls_logits": head["cls_logits"],
           "anchors": anchors[0], "targets.boxes": gt_boxes, "targets.labels": gt_labels,
           "loss.classification": losses["classification"], "loss.bbox_regression": losses["bbox_regression"]}
    for i, f in enumerate(features):
        out[f"feature.{i}"] = f
    for n in grad_names:
        out["grad." + n] = params[n].grad
    with torch.no_grad():
        det = model.postprocess_detections(head, anchors, [(S, S)])[0]
    out["det.boxes"], out["det.scores"], out["det.labels"] = det["boxes"], det["scores"], det["labels"]
    meta = {"model": "ssdlite320_mobilenet_v3_large", **_versions(), "num_classes": K, "input_size": S,
            "num_params_91": n91, "reference_dtype": "float64", "bn_mode": "eval",
            "grad_names": json.dumps(grad_names), "state_dict_keys": json.dumps(list(model.state_dict()))}
    save(args.out, out, meta)
    print(f"wrote {args.out}: loss cls {losses['classification'].item():.6f} box "
          f"{losses['bbox_regression'].item():.6f}, {len(det['scores'])} detections, params@91 {n91}")


if __name__ == "__main__":
    main()
