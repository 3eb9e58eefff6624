"""Parity fixture for retinanet_resnet50_fpn (torchvision v1 layout, frozen-BN backbone).

Builds torchvision's RetinaNet on resnet50(norm_layer=FrozenBatchNorm2d) with
_resnet_fpn_extractor(backbone, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
(what retinanet_resnet50_fpn builds for a pretrained backbone), applies
tools/parity_init.parity_init, and records on a fixed normalized input (bypassing
GeneralizedRCNNTransform): head outputs, anchors, the loss parts for fixed targets, a few
parameter gradients of the total loss, and postprocess_detections' output.

  python3 tools/export_retinanet.py --out tests/fixtures/retinanet_resnet50_fpn_parity.safetensors

export(out_path, num_classes=5, size=128) is also called by tools/export_torchvision.py.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_init import parity_init  # noqa: E402

GRAD_NAMES = [
    "backbone.body.conv1.weight",
    "backbone.body.layer2.0.conv1.weight",
    "backbone.fpn.layer_blocks.0.0.bias",
    "head.regression_head.conv.0.0.bias",
    "head.classification_head.cls_logits.bias",
    "head.regression_head.bbox_reg.weight",
]


def build_model(num_classes):
    import torchvision
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(backbone, num_classes)


def fixture_input(size):
    # Smooth deterministic pattern, already normalized: x[c, h, w].
    c = torch.arange(3, dtype=torch.float64).view(3, 1, 1)
    h = torch.arange(size, dtype=torch.float64).view(1, size, 1)
    w = torch.arange(size, dtype=torch.float64).view(1, 1, size)
    x = torch.sin(0.05 * (h + 1) * (c + 1)) * torch.cos(0.07 * (w + 1) + 0.3 * c) + 0.1 * (c - 1)
    return x.unsqueeze(0).to(torch.float32)


def export(out_path, num_classes=5, size=128):
    import torchvision
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import boxes as box_ops

    torch.manual_seed(0)
    model = build_model(num_classes)
    parity_init(model)
    model.eval()
    for p in model.parameters():  # conv1/layer1 frozen by _resnet_fpn_extractor: unfrozen here so the fixture has their gradients (the C++ test builds trainable_backbone_layers 5)
        p.requires_grad_(True)
    keys = list(model.state_dict().keys())

    x = fixture_input(size)
    feats = list(model.backbone(x).values())
    head = model.head(feats)
    cls_logits, bbox_reg = head["cls_logits"], head["bbox_regression"]

    anchors = model.anchor_generator(ImageList(x, [(size, size)]), feats)[0]

    gt_boxes = torch.tensor([[10.0, 12.0, 70.0, 80.0], [50.0, 40.0, 120.0, 110.0], [0.0, 64.0, 30.0, 128.0]])
    gt_labels = torch.tensor([1, 3, 4], dtype=torch.int64)
    targets = [{"boxes": gt_boxes, "labels": gt_labels}]
    iou = box_ops.box_iou(gt_boxes, anchors)
    matched = [model.proposal_matcher(iou)]
    losses = model.head.compute_loss(targets, head, [anchors], matched)
    total = losses["classification"] + losses["bbox_regression"]
    model.zero_grad()
    total.backward()
    params = dict(model.named_parameters())

    with torch.no_grad():
        hw = [f.size(2) * f.size(3) for f in feats]
        a_per_loc = cls_logits.size(1) // sum(hw)
        split = [n * a_per_loc for n in hw]
        sh = {"cls_logits": list(cls_logits.split(split, dim=1)),
              "bbox_regression": list(bbox_reg.split(split, dim=1))}
        dets = model.postprocess_detections(sh, [list(anchors.split(split))], [(size, size)])[0]

    out = {
        "input": x,
        "cls_logits": cls_logits.detach(),
        "bbox_regression": bbox_reg.detach(),
        "anchors": anchors.detach(),
        "gt_boxes": gt_boxes,
        "gt_labels": gt_labels,
        "matched_idxs": matched[0],
        "loss_classification": losses["classification"].detach().reshape(1),
        "loss_bbox_regression": losses["bbox_regression"].detach().reshape(1),
        "det_boxes": dets["boxes"].contiguous(),
        "det_scores": dets["scores"].contiguous(),
        "det_labels": dets["labels"].contiguous(),
        "level_sizes": torch.tensor(split, dtype=torch.int64),
    }
    for n in GRAD_NAMES:
        out["grad." + n] = params[n].grad.detach().clone()
    meta = {
        "model": "retinanet_resnet50_fpn",
        "num_classes": str(num_classes),
        "input_size": str(size),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "num_parameters": str(sum(p.numel() for p in model.parameters())),
        "state_dict_keys": json.dumps(keys),
        "grad_names": json.dumps(GRAD_NAMES),
    }
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, out_path, metadata=meta)
    print(f"wrote {out_path}: {len(keys)} keys, {anchors.shape[0]} anchors, "
          f"loss cls {losses['classification'].item():.6f} box {losses['bbox_regression'].item():.6f}, "
          f"{dets['boxes'].shape[0]} detections")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/retinanet_resnet50_fpn_parity.safetensors")
    ap.add_argument("--num-classes", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args()
    export(a.out, a.num_classes, a.size)


if __name__ == "__main__":
    main()
