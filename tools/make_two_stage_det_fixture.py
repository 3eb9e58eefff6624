#!/usr/bin/env python3
"""Fixture for the two-stage detection utilities (engine/detection_two_stage.h): torchvision's
own RegionProposalNetwork.filter_proposals, RoIHeads.postprocess_detections and Matcher on
small random inputs, in float64.

Usage (from the repository root; needs torch and torchvision, CPU only):

    python3 tools/make_two_stage_det_fixture.py [--out tests/fixtures/two_stage_det.safetensors]

Contents (names are prefixes of the tensors in the file):
  rpn{1,2}_*   objectness [2, A], deltas [2, A, 4], anchors [A, 4] (levels 240/60/15 anchors,
               some tiny and some outside the images; clip sizes
               (h, w) = (64, 80) and (50, 70)), and torchvision's result per image
               padded to post_nms_top_n: boxes, scores, levels (-1 padding), counts. Case 1:
               pre 50 (level 3 has only 15: more requested than anchors), post 40, NMS 0.7,
               min_size 1e-3, score 0. Case 2: pre 30, post 60, NMS 0.5, min_size 2, score 0.8 (fewer survivors than post).
               Case 3: levels 200 / 0 / 60 (an empty level), pre 1000 (more than every level),
               post 500 (more than the anchors).
               The levels of the kept boxes are recovered from the kept indices.
  head_*       class_logits [47, 6], box_deltas [47, 24], proposals [47, 4], roi_image (30 RoIs
               of image 0, 17 of image 1), clip sizes (64, 80) and (56, 72), and torchvision's detections padded to 50 (score 0.05,
               NMS 0.5, 50 per image): boxes, scores, labels (-1 padding), counts.
  match_*      gt [2, 5, 4] with counts (5, 3), proposals [2, 40, 4] with counts (40, 25); exact
               duplicates and a GT equal to a proposal make ties; matches of Matcher(0.7, 0.3,
               True) (rpn) and Matcher(0.5, 0.5, False) (roi) per image, [2, 40], padded with -3.
Written with a small safetensors writer (no extra package). Random data from torch.Generator
seeded 15; the tensors are stored as they are compared (f64, i64).
"""
import argparse
import json
import struct

import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops

H, W = 64, 80
RPN_SHAPES = [(64, 80), (50, 70)]   # (h, w) clip size of each image: they differ, as in a batch
HEAD_SHAPES = [(64, 80), (56, 72)]
LEVELS = [240, 60, 15]


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        dtype = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_boxes(g, n, cx_lo, cx_hi, cy_lo, cy_hi, side_lo, side_hi):
    cx = cx_lo + (cx_hi - cx_lo) * torch.rand(n, generator=g, dtype=torch.float64)
    cy = cy_lo + (cy_hi - cy_lo) * torch.rand(n, generator=g, dtype=torch.float64)
    w = side_lo + (side_hi - side_lo) * torch.rand(n, generator=g, dtype=torch.float64)
    h = side_lo + (side_hi - side_lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def rpn_case(g, prefix, pre, post, nms, min_size, score, out, levels=LEVELS):
    A = sum(levels)
    anchors = random_boxes(g, A, -10, W + 10, -10, H + 10, 4, 40)
    anchors[::17, 2] = anchors[::17, 0] + 5e-4  # tiny: dropped by min_size
    objectness = 2.0 * torch.randn(2, A, generator=g, dtype=torch.float64)
    deltas = 0.5 * torch.randn(2, A, 4, generator=g, dtype=torch.float64)
    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 3), 0.7, 0.3, 256, 0.5,
                                dict(training=pre, testing=pre), dict(training=post, testing=post), nms,
                                score_thresh=score).double().eval()
    rpn.min_size = min_size
    proposals = rpn.box_coder.decode(deltas.reshape(-1, 4), [anchors, anchors]).view(2, -1, 4)
    # Which anchor (hence which level) each kept box came from: filter_proposals does not
    # return indices, so the levels are recovered by matching the kept boxes to the decoded
    # and clipped candidates (exact equality; the boxes are distinct random values).
    boxes_list, scores_list = rpn.filter_proposals(proposals, objectness.reshape(-1, 1), RPN_SHAPES, levels)
    level_of = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(levels)])
    ob, osc, olv, cnt = torch.zeros(2, post, 4, dtype=torch.float64), torch.zeros(2, post, dtype=torch.float64), \
        torch.full((2, post), -1, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)
    for b in range(2):
        clipped = box_ops.clip_boxes_to_image(proposals[b], RPN_SHAPES[b])
        n = boxes_list[b].shape[0]
        cnt[b] = n
        ob[b, :n] = boxes_list[b]
        osc[b, :n] = scores_list[b]
        for j in range(n):
            hit = ((clipped == boxes_list[b][j]).all(1) & (torch.sigmoid(objectness[b]) == scores_list[b][j])).nonzero()
            assert hit.numel() == 1, "ambiguous level"
            olv[b, j] = level_of[hit[0, 0]]
    out.update({f"{prefix}_objectness": objectness, f"{prefix}_deltas": deltas, f"{prefix}_anchors": anchors,
                f"{prefix}_boxes": ob, f"{prefix}_scores": osc, f"{prefix}_levels": olv, f"{prefix}_counts": cnt})


def head_case(g, out):
    per_image, C, K = [30, 17], 6, 50
    R = sum(per_image)
    centres = random_boxes(g, 4, 10, W - 10, 10, H - 10, 10, 30)
    props = []
    for r in range(R):  # clustered around 4 objects so that NMS has work to do
        c = centres[r % 4]
        jitter = 3.0 * torch.randn(4, generator=g, dtype=torch.float64)
        props.append(c + jitter)
    proposals = torch.stack(props)
    proposals[:, 2:] = torch.maximum(proposals[:, 2:], proposals[:, :2] + 1.0)
    proposals[5, 2] = proposals[5, 0] + 1e-3  # tiny: every class's box is dropped by min_size
    logits = 1.5 * torch.randn(R, C, generator=g, dtype=torch.float64)
    deltas = 0.5 * torch.randn(R, 4 * C, generator=g, dtype=torch.float64)
    heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, K).double().eval()
    plist = list(proposals.split(per_image))
    boxes, scores, labels = heads.postprocess_detections(logits, deltas, plist, HEAD_SHAPES)
    ob, osc, olb, cnt = torch.zeros(2, K, 4, dtype=torch.float64), torch.zeros(2, K, dtype=torch.float64), \
        torch.full((2, K), -1, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)
    for b in range(2):
        n = boxes[b].shape[0]
        cnt[b] = n
        ob[b, :n], osc[b, :n], olb[b, :n] = boxes[b], scores[b], labels[b]
    roi_image = torch.cat([torch.full((n,), b, dtype=torch.int64) for b, n in enumerate(per_image)])
    out.update({"head_class_logits": logits, "head_box_deltas": deltas, "head_proposals": proposals,
                "head_roi_image": roi_image, "head_boxes": ob, "head_scores": osc, "head_labels": olb,
                "head_counts": cnt})


def match_case(g, out):
    G, N, gc, nc = 5, 40, [5, 3], [40, 25]
    gt = torch.zeros(2, G, 4, dtype=torch.float64)
    pr = torch.zeros(2, N, 4, dtype=torch.float64)
    rpn_m = torch.full((2, N), -3, dtype=torch.int64)
    roi_m = torch.full((2, N), -3, dtype=torch.int64)
    rpn_matcher = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)
    roi_matcher = det_utils.Matcher(0.5, 0.5, allow_low_quality_matches=False)
    for b in range(2):
        gb = random_boxes(g, gc[b], 10, W - 10, 10, H - 10, 8, 30)
        pb = torch.cat([gb[i:i + 1] + 4.0 * torch.randn(nc[b] // gc[b], 4, generator=g, dtype=torch.float64)
                        for i in range(gc[b])] + [random_boxes(g, nc[b] - gc[b] * (nc[b] // gc[b]), 10, W - 10, 10,
                                                               H - 10, 8, 30)])
        pb[:, 2:] = torch.maximum(pb[:, 2:], pb[:, :2] + 1.0)
        pb[7] = pb[3]          # exact duplicate: ties in the low-quality rule
        pb[nc[b] - 1] = gb[0]  # a proposal equal to a GT (IoU 1)
        pb[nc[b] - 2] = gb[0]  # and its duplicate
        iou = box_ops.box_iou(gb, pb)
        gt[b, :gc[b]], pr[b, :nc[b]] = gb, pb
        rpn_m[b, :nc[b]] = rpn_matcher(iou)
        roi_m[b, :nc[b]] = roi_matcher(iou)
    out.update({"match_gt": gt, "match_gt_counts": torch.tensor(gc), "match_proposals": pr,
                "match_proposal_counts": torch.tensor(nc), "match_rpn": rpn_m, "match_roi": roi_m})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/two_stage_det.safetensors")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(15)
    out = {}
    rpn_case(g, "rpn1", 50, 40, 0.7, 1e-3, 0.0, out)
    rpn_case(g, "rpn2", 30, 60, 0.5, 2.0, 0.8, out)
    rpn_case(g, "rpn3", 1000, 500, 0.7, 1e-3, 0.0, out, levels=[200, 0, 60])
    head_case(g, out)
    match_case(g, out)
    save_safetensors(args.out, out)
    summary = {k: list(v.shape) for k, v in out.items() if k.endswith("counts")}
    print(args.out, {k: out[k].tolist() for k in summary})
    print("rpn_between_thresholds", int((out["match_rpn"] == -2).sum()), "roi_neg", int((out["match_roi"] == -1).sum()))


if __name__ == "__main__":
    main()
