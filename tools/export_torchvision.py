#!/usr/bin/env python3
"""Parity fixtures and weight conversion from torchvision detection models.

Usage (from the repository root; needs torch, torchvision and safetensors on the CPU):

    # the SSD300 parity fixture used by tests/models/test_ssd.cpp
    python tools/export_torchvision.py --model ssd300_vgg16 --num-classes 5 \
        --out tests/fixtures/ssd300_vgg16_parity.safetensors

    # convert real torchvision weights (downloads them through torchvision's own cache)
    python tools/export_torchvision.py --model ssd300_vgg16 --weights DEFAULT --out ssd300_coco.safetensors

    # Faster R-CNN COCO weights (FrozenBatchNorm2d eps 0 recorded, as torchvision loads them)
    python tools/export_torchvision.py --model fasterrcnn_resnet50_fpn --weights DEFAULT --out frcnn_coco.safetensors

    # RetinaNet: dispatched to tools/export_retinanet.py when that module is present
    python tools/export_torchvision.py --model retinanet_resnet50_fpn ...

Parity mode (the default, no --weights): builds torchvision's ssd300_vgg16(weights=None,
weights_backbone=None, num_classes=K), overwrites every state_dict tensor with
tools/parity_init.parity_init (the same formula as models::parity_init in C++; float32
values), converts the model to float64 so the reference carries no float32 rounding of its
own (everything is stored as float32), and then,
bypassing GeneralizedRCNNTransform (no resize, no normalisation: the stored input is already
normalised, i.e. 0..255 pixels minus the mean, std 1; its amplitude is kept small, 2.54,
because the parity weights make VGG's conv4_3 cancel heavily: at amplitude 127 even torch's
own float32 result differs from float64 by 3e-4 of the maximum on the L2-normed level), calls these internal pieces of the
torchvision model directly:
    features   = list(model.backbone(x).values())
    head       = model.head(features)                 -> bbox_regression [1, A, 4], cls_logits [1, A, K]
    anchors    = model.anchor_generator(ImageList(x, [(S, S)]), features)
    matched    = model.proposal_matcher(box_ops.box_iou(gt_boxes, anchors[0]))   (as SSD.forward)
    losses     = model.compute_loss(targets, head, anchors, [matched])
    (losses["classification"] + losses["bbox_regression"]).backward()  -> grad.<param name>
    detections = model.postprocess_detections(head, anchors, [(S, S)])
torchvision clips decoded boxes to the image before NMS, and so does our SSD postprocess
(PostprocessOptions::clip_width/height); the test compares with "det.*". The fixture also
carries "det_noclip.*" (the same call with box_ops.clip_boxes_to_image patched to the
identity) for checking an unclipped configuration.

Written tensors (safetensors, F32 unless noted): input, head.bbox_regression,
head.cls_logits, anchors, targets.boxes, targets.labels (I64), loss.classification,
loss.bbox_regression, grad.<name> for a few parameters, det.{boxes,scores,labels} and
det_noclip.{boxes,scores,labels}. __metadata__: model, num_classes, input_size, torch and
torchvision versions, grad_names (JSON list) and state_dict_keys (JSON list, in order).

Weight mode (--weights NAME): writes the model's state_dict as is (torchvision names are our
names, see docs/weights.md), with the same __metadata__ minus the fixture entries.
"""
import argparse
import importlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_init import parity_init  # noqa: E402


def _versions():
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


def save(path, tensors, metadata):
    """Writes with the safetensors package when present, else raw (the format is tiny)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {k: str(v) for k, v in metadata.items()}
    try:
        from safetensors.torch import save_file

        save_file(tensors, path, metadata=metadata)
        return
    except ImportError:
        pass
    names = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k, v in tensors.items():
        b = v.numpy().tobytes()
        header[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def smooth_input(size, amplitude=2.54):
    """A deterministic smooth pattern in normalised units (|x| <= amplitude)."""
    ys = torch.arange(size, dtype=torch.float64).view(1, size, 1)
    xs = torch.arange(size, dtype=torch.float64).view(1, 1, size)
    c = torch.arange(3, dtype=torch.float64).view(3, 1, 1)
    v = amplitude * torch.sin(0.031 * xs + 0.017 * ys * (c + 1) + 0.5 * c) * torch.cos(0.023 * ys - 0.011 * xs + c)
    return v.unsqueeze(0).to(torch.float32)


def export_ssd(args):
    from torchvision.models.detection import ssd as tv_ssd
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import boxes as box_ops

    if args.model != "ssd300_vgg16":
        raise SystemExit("torchvision only builds ssd300_vgg16 (our ssd512_vgg16 follows the Caffe SSD512 layout)")
    meta = {"model": args.model, **_versions()}
    if args.weights:
        model = tv_ssd.ssd300_vgg16(weights=args.weights)
        sd = model.state_dict()
        meta.update(num_classes=model.head.classification_head.num_columns, state_dict_keys=json.dumps(list(sd)))
        save(args.out, dict(sd), meta)
        print(f"wrote {args.out}: {len(sd)} tensors")
        return

    K, S = args.num_classes, 300
    model = tv_ssd.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=K)
    parity_init(model)  # float32 values, exactly those of models::parity_init
    model.double().train()  # reference maths in float64 (stored as float32)
    x = smooth_input(S)
    x64 = x.double()
    features = list(model.backbone(x64).values())
    head = model.head(features)
    anchors = model.anchor_generator(ImageList(x64, [(S, S)]), features)
    gt_boxes = torch.tensor([[40.0, 50.0, 140.0, 170.0], [150.0, 30.0, 290.0, 120.0], [100.0, 180.0, 180.0, 260.0]],
                            dtype=torch.float64)
    gt_labels = torch.tensor([1, 3, K - 1], dtype=torch.int64)
    targets = [{"boxes": gt_boxes, "labels": gt_labels}]
    matched = [model.proposal_matcher(box_ops.box_iou(gt_boxes, anchors[0]))]
    losses = model.compute_loss(targets, head, anchors, matched)
    (losses["classification"] + losses["bbox_regression"]).backward()
    # Gradients through the first VGG convs are ill-conditioned in float32 with the parity
    # weights (torch's own float32 grad of features.0.weight is 1.4e-3 of its max off from
    # float64), so the checked tensors start at conv3_1.
    grad_names = ["backbone.scale_weight", "backbone.features.10.weight", "backbone.features.21.bias",
                  "backbone.extra.0.7.3.bias", "backbone.extra.1.2.bias",
                  "head.classification_head.module_list.0.weight", "head.classification_head.module_list.2.bias",
                  "head.regression_head.module_list.1.weight", "head.regression_head.module_list.3.bias"]
    params = dict(model.named_parameters())
    out = {"input": x, "head.bbox_regression": head["bbox_regression"], "head.cls_logits": head["cls_logits"],
           "anchors": anchors[0], "targets.boxes": gt_boxes, "targets.labels": gt_labels,
           "loss.classification": losses["classification"], "loss.bbox_regression": losses["bbox_regression"]}
    for n in grad_names:
        out["grad." + n] = params[n].grad
    with torch.no_grad():
        det = model.postprocess_detections(head, anchors, [(S, S)])[0]
        clip = box_ops.clip_boxes_to_image
        tv_ssd.box_ops.clip_boxes_to_image = lambda b, s: b
        try:
            det_nc = model.postprocess_detections(head, anchors, [(S, S)])[0]
        finally:
            tv_ssd.box_ops.clip_boxes_to_image = clip
    for prefix, d in (("det", det), ("det_noclip", det_nc)):
        out[prefix + ".boxes"], out[prefix + ".scores"], out[prefix + ".labels"] = d["boxes"], d["scores"], d["labels"]
    meta.update(num_classes=K, input_size=S, reference_dtype="float64", grad_names=json.dumps(grad_names),
                state_dict_keys=json.dumps(list(model.state_dict())))
    save(args.out, out, meta)
    print(f"wrote {args.out}: loss cls {losses['classification'].item():.6f} box "
          f"{losses['bbox_regression'].item():.6f}, {len(det['scores'])} detections "
          f"({len(det_nc['scores'])} unclipped)")


def export_fasterrcnn(args):
    """Convert mode only (the parity fixture is tools/make_fasterrcnn_fixture.py).

    torchvision loads fasterrcnn_resnet50_fpn COCO_V1 weights with overwrite_eps(model, 0.0):
    every FrozenBatchNorm2d eps becomes 0. The file records that as metadata frozen_bn_eps "0",
    which models::load_model_weights applies, so our forward matches theirs.
    """
    from torchvision.models.detection import faster_rcnn as tv_frcnn

    if not args.weights:
        raise SystemExit("fasterrcnn_resnet50_fpn: give --weights (e.g. DEFAULT); the parity fixture is "
                         "tools/make_fasterrcnn_fixture.py")
    model = tv_frcnn.fasterrcnn_resnet50_fpn(weights=args.weights)
    eps = {m.eps for m in model.modules() if type(m).__name__ == "FrozenBatchNorm2d"}
    if len(eps) != 1:
        raise SystemExit(f"unexpected FrozenBatchNorm2d eps values {sorted(eps)}")
    sd = model.state_dict()
    num_classes = model.roi_heads.box_predictor.cls_score.out_features
    meta = {"model": args.model, **_versions(), "arch": args.model, "num_classes": num_classes,
            "anchor_preset": "coco", "input_size": 800, "format": "ssd_engine.detection_model",
            "frozen_bn_eps": repr(float(eps.pop())), "state_dict_keys": json.dumps(list(sd))}
    save(args.out, dict(sd), meta)
    print(f"wrote {args.out}: {len(sd)} tensors, {sum(p.numel() for p in model.parameters())} parameters, "
          f"FrozenBatchNorm2d eps {meta['frozen_bn_eps']}")


EXPORTERS = {"ssd300_vgg16": export_ssd, "fasterrcnn_resnet50_fpn": export_fasterrcnn}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--num-classes", type=int, default=5)
    p.add_argument("--weights", default=None, help="torchvision weights enum name (e.g. DEFAULT): convert mode")
    p.add_argument("--out", required=True)
    args, rest = p.parse_known_args()
    if args.model in EXPORTERS:
        if rest:
            p.error(f"unrecognized arguments: {' '.join(rest)}")
        return EXPORTERS[args.model](args)
    if args.model.startswith("retinanet"):
        # RetinaNet lives in tools/export_retinanet.py (its own CLI): forward the flags to it.
        try:
            mod = importlib.import_module("export_retinanet")
        except ImportError:
            raise SystemExit("tools/export_retinanet.py is not present")
        argv = [mod.__file__, "--out", args.out, "--num-classes", str(args.num_classes)] + rest
        if args.weights:
            argv += ["--weights", args.weights]
        sys.argv = argv
        return mod.main()
    raise SystemExit(f"unknown model {args.model}; known: {sorted(EXPORTERS)} and retinanet_* (tools/export_retinanet.py)")

if __name__ == "__main__":
    main()
