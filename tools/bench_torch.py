#!/usr/bin/env python3
"""PyTorch / torchvision timings for the rows of bench_kernels, on the same shapes.

Run on the GPU machine (PyTorch + torchvision installed) next to bench_kernels, so that each
of our rows has a reference figure from the same GPU in the same session:

    python3 tools/bench_torch.py --json torch_rows.json
    build/apps/bench_kernels --device cuda --json our_rows.json

Rows carry the names bench_kernels prints (l2norm_fwd, conv2d_dilated, nms, ...), and shape
strings that say what was run. Timing: CUDA events around each repetition after a warm-up,
median (and min/max) of --reps repetitions. `--device cpu` runs the same code on the CPU with
smaller batches (said in the shape string) and few repetitions, as a smoke test.

Notes on the comparisons:
  * conv2d_dilated is timed with cuDNN autotuning (torch.backends.cudnn.benchmark) and TF32
    off, i.e. FP32 like our kernel; conv2d_dilated_tf32 repeats it with TF32 allowed
    (PyTorch's default for convolutions).
  * focal_loss uses one-hot targets over all anchors (torchvision's RetinaNet drops the
    between-threshold anchors first; the per-element work is the same).
  * box_iou calls torchvision.ops.box_iou once per image (as torchvision's matchers do).
  * roi_align_* time torchvision.ops.MultiScaleRoIAlign (level mapper, per-level roi_align,
    scatter into the result); roi_align_bwd_det is its backward under
    torch.use_deterministic_algorithms (the pure-PyTorch _roi_align on CUDA).
  * rpn_proposals times RegionProposalNetwork's decode of every anchor plus filter_proposals
    (our kernel decodes only the per-level top-k); box_head_postprocess is
    RoIHeads.postprocess_detections; sample_balanced is BalancedPositiveNegativeSampler.
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the GPU machine has torch
    torch = None

try:
    import torchvision
    from torchvision.ops import batched_nms, box_iou, sigmoid_focal_loss
except ImportError:
    torchvision = None

try:
    from torchvision.models.detection._utils import BoxCoder as TVBoxCoder
except ImportError:
    TVBoxCoder = None


# ---- timing ------------------------------------------------------------------------------


class Timer:
    def __init__(self, device, reps, warmup):
        self.device, self.reps, self.warmup = device, reps, warmup

    def __call__(self, fn):
        """Runs fn warmup times, then reps timed times. Returns (median, min, max) in ms."""
        cuda = self.device.type == "cuda"
        for _ in range(self.warmup):
            fn()
        if cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(self.reps):
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), min(times), max(times)


# ---- inputs ------------------------------------------------------------------------------


def random_boxes(shape, side, gen, device):
    """Corner boxes (x1, y1, x2, y2) inside [0, side]^2 with sides between side/30 and side/3."""
    n = math.prod(shape)
    wh = (torch.rand(n, 2, generator=gen) * (side / 3 - side / 30) + side / 30)
    xy = torch.rand(n, 2, generator=gen) * (side - wh)
    return torch.cat([xy, xy + wh], dim=1).reshape(*shape, 4).to(device)


def box_coder(weights):
    """torchvision's BoxCoder, or the same formulas in torch when it cannot be imported."""
    if TVBoxCoder is not None:
        return TVBoxCoder(weights=weights)

    class Coder:
        clip = math.log(1000.0 / 16)

        def encode_single(self, gt, anchors):
            wx, wy, ww, wh = weights
            aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
            ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
            gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
            gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
            return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw / aw),
                                wh * torch.log(gh / ah)], dim=1)

        def decode_single(self, codes, anchors):
            wx, wy, ww, wh = weights
            aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
            ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
            dx, dy = codes[:, 0] / wx, codes[:, 1] / wy
            dw = torch.clamp(codes[:, 2] / ww, max=self.clip)
            dh = torch.clamp(codes[:, 3] / wh, max=self.clip)
            cx, cy = dx * aw + ax, dy * ah + ay
            w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
            return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)

    return Coder()


# ---- rows --------------------------------------------------------------------------------
# Each row function gets (ctx) and returns a list of (name, shape, fn) to time, or a string
# saying why it was skipped.

SSD_ANCHORS, SSD_CLASSES = 8732, 21
RETINA_ANCHORS, RETINA_CLASSES = 49104, 91


class Ctx:
    def __init__(self, device):
        self.device = device
        self.gpu = device.type == "cuda"
        self.gen = torch.Generator().manual_seed(0)

    def batch(self, gpu_batch, cpu_batch):
        return gpu_batch if self.gpu else cpu_batch

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.gen).to(self.device)

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.gen).to(self.device)


def rows_l2norm(ctx):
    b = ctx.batch(32, 4)
    x = ctx.randn(b, 512, 38, 38)
    scale = torch.full((512,), 20.0, device=ctx.device)

    def fwd():
        with torch.no_grad():
            return F.normalize(x, p=2.0, dim=1, eps=1e-12) * scale.view(1, -1, 1, 1)

    xg = x.clone().requires_grad_(True)
    sg = scale.clone().requires_grad_(True)
    y = F.normalize(xg, p=2.0, dim=1, eps=1e-12) * sg.view(1, -1, 1, 1)
    gy = ctx.randn(b, 512, 38, 38)

    def bwd():  # backward alone, on the graph of one forward
        return torch.autograd.grad(y, (xg, sg), gy, retain_graph=True)

    return [("l2norm_fwd", f"{b}x512x38x38 f32, scale 20", fwd),
            ("l2norm_bwd", f"{b}x512x38x38 f32, gx and gscale", bwd)]


def rows_conv2d_dilated(ctx):
    out = []
    C, O, H = 512, 1024, 19
    w = ctx.randn(O, C, 3, 3) / math.sqrt(C * 9)
    b = ctx.randn(O)
    for n in ((1, 8, 32) if ctx.gpu else (1,)):
        x = ctx.randn(n, C, H, H)

        def conv(x=x, pad=6, dil=6, tf32=False):
            torch.backends.cudnn.allow_tf32 = tf32
            with torch.no_grad():
                return F.conv2d(x, w, b, stride=1, padding=pad, dilation=dil)

        shape = f"N={n} {C}->{O} {H}x{H} k3"
        out.append(("conv2d_dilated", f"{shape} d6 p6 f32, torch (TF32 off)", conv))
        out.append(("conv2d_undilated", f"{shape} d1 p1 f32, torch (TF32 off)",
                    lambda conv=conv: conv(pad=1, dil=1)))
        if ctx.gpu:
            out.append(("conv2d_dilated_tf32", f"{shape} d6 p6 f32, torch (TF32 allowed)",
                        lambda conv=conv: conv(tf32=True)))
    return out


# The 3x3 stride-1 layers of bench_kernels' conv3x3 / conv3x3_layers rows (apps/bench/
# rows_conv_winograd.cpp): (name, C, O, H, N), pad 1, f32. oneDNN picks its own algorithm.
CONV3X3_FEW = [("vgg conv2_2", 128, 128, 150, 1), ("vgg conv4_3", 512, 512, 38, 1), ("vgg conv5_3", 512, 512, 19, 1),
               ("r50@800 layer1", 64, 64, 200, 1), ("tiny_ssd blk1", 64, 128, 32, 1), ("vgg conv5_3", 512, 512, 19, 4)]
CONV3X3_ALL = [("vgg conv1_1", 3, 64, 300), ("vgg conv1_2", 64, 64, 300), ("vgg conv2_1", 64, 128, 150),
               ("vgg conv2_2", 128, 128, 150), ("vgg conv3_1", 128, 256, 75), ("vgg conv3_2/3", 256, 256, 75),
               ("vgg conv4_1", 256, 512, 38), ("vgg conv4_2/3", 512, 512, 38), ("vgg conv5_x", 512, 512, 19),
               ("r50@512 layer1", 64, 64, 128), ("r50@512 layer2", 128, 128, 64), ("r50@512 layer3", 256, 256, 32),
               ("r50@512 layer4", 512, 512, 16), ("r50@800 layer1", 64, 64, 200), ("r50@800 layer2", 128, 128, 100),
               ("r50@800 layer3", 256, 256, 50), ("r50@800 layer4", 512, 512, 25), ("tiny conv0a", 3, 16, 256),
               ("tiny conv0b", 16, 16, 256), ("tiny conv1a", 16, 32, 128), ("tiny conv1b", 32, 32, 128),
               ("tiny conv2a", 32, 64, 64), ("tiny conv2b", 64, 64, 64), ("tiny blk1a", 64, 128, 32),
               ("tiny blk1b", 128, 128, 32), ("tiny blk2", 128, 128, 16), ("tiny blk3", 128, 128, 8),
               ("tiny head0 cls", 64, 8, 32), ("tiny head1 cls", 128, 8, 16), ("tiny head3", 128, 16, 4)]


def conv3x3_rows(ctx, layers, fwd_name, bwd_name):
    out = []
    for layer in layers:
        name, C, O, H = layer[:4]
        n = layer[4] if len(layer) > 4 else 1
        x = ctx.rand(n, C, H, H)
        w = ctx.randn(O, C, 3, 3) * math.sqrt(2.0 / (C * 9))
        b = ctx.randn(O) * 0.1
        gy = ctx.randn(n, O, H, H)

        def fwd(x=x, w=w, b=b):
            with torch.no_grad():
                return F.conv2d(x, w, b, stride=1, padding=1)

        def bwd(x=x, w=w, b=b, gy=gy):  # forward + backward (gx, gw, gb), as bench_kernels
            xl, wl, bl = (t.detach().requires_grad_(True) for t in (x, w, b))
            F.conv2d(xl, wl, bl, stride=1, padding=1).backward(gy)
            return wl.grad

        shape = f"{name} N={n} {C}->{O} {H}x{H} k3 p1 f32"
        out.append((fwd_name, shape, fwd))
        out.append((bwd_name, shape + ", fwd+bwd", bwd))
    return out


def rows_conv3x3(ctx):
    return conv3x3_rows(ctx, CONV3X3_FEW, "conv3x3_fwd_torch", "conv3x3_bwd_torch")


def rows_conv3x3_layers(ctx):
    return conv3x3_rows(ctx, CONV3X3_ALL, "conv3x3_layers_fwd_torch", "conv3x3_layers_bwd_torch")


def rows_nms(ctx):
    if torchvision is None:
        return "torchvision not importable"
    images, cands, classes = ctx.batch(32, 4), 4000, 20
    boxes = random_boxes((images * cands,), 300.0, ctx.gen, ctx.device)
    scores = ctx.rand(images * cands)
    cls = torch.randint(0, classes, (images * cands,), generator=ctx.gen).to(ctx.device)
    image = torch.arange(images, device=ctx.device).repeat_interleave(cands)
    groups = image * classes + cls  # NMS within one image and one class

    def fn():
        return batched_nms(boxes, scores, groups, 0.45)

    return [("nms", f"{images} img x {cands} candidates, {classes} classes, iou 0.45 f32 (batched_nms)", fn)]


def rows_hard_negative_mining(ctx):
    B, A = ctx.batch(32, 4), SSD_ANCHORS
    loss = ctx.rand(B, A) * 5.0
    frac = 0.01 + 0.02 * torch.rand(B, 1, generator=ctx.gen)
    positive = (torch.rand(B, A, generator=ctx.gen) < frac).to(ctx.device)

    def fn():  # torchvision SSD's compute_loss: the double sort
        num_negative = 3 * positive.sum(1, keepdim=True)
        negative_loss = loss.clone()
        negative_loss[positive] = -float("inf")
        _, idx = negative_loss.sort(1, descending=True)
        return idx.sort(1)[1] < num_negative

    return [("hard_negative_mining", f"loss {B}x{A} f32, ratio 3, 1-3% positives (double sort)", fn)]


def rows_focal_loss(ctx):
    if torchvision is None:
        return "torchvision not importable"
    B = ctx.batch(16, 2)
    x = (ctx.randn(B, RETINA_ANCHORS, RETINA_CLASSES) - 4.6).requires_grad_(True)
    labels = torch.randint(0, RETINA_CLASSES, (B, RETINA_ANCHORS), generator=ctx.gen)
    foreground = torch.rand(B, RETINA_ANCHORS, generator=ctx.gen) < 0.01
    target = torch.zeros(B, RETINA_ANCHORS, RETINA_CLASSES)
    target[foreground, labels[foreground]] = 1.0
    target = target.to(ctx.device)

    def fn():
        loss = sigmoid_focal_loss(x, target, alpha=0.25, gamma=2.0, reduction="sum")
        return torch.autograd.grad(loss, x)

    return [("focal_loss", f"{B}x{RETINA_ANCHORS}x{RETINA_CLASSES} f32, fwd+bwd, sum", fn)]


def rows_softmax_ce_smooth_l1(ctx):
    out = []
    # 8 x 8732 is what bench_kernels runs today; 32 x 8732 is SSD300 at batch 32.
    for b in ((8, 32) if ctx.gpu else (2,)):
        n = b * SSD_ANCHORS
        logits = ctx.randn(n, SSD_CLASSES).requires_grad_(True)
        target = torch.randint(0, SSD_CLASSES, (n,), generator=ctx.gen).to(ctx.device)
        g_ce = ctx.randn(n)

        def ce(logits=logits, target=target, g=g_ce):
            loss = F.cross_entropy(logits, target, reduction="none")
            return torch.autograd.grad(loss, logits, g)

        pred = ctx.randn(n, 4).requires_grad_(True)
        box_t = ctx.randn(n, 4)
        g_l1 = ctx.randn(n, 4)

        def sl1(pred=pred, box_t=box_t, g=g_l1):
            loss = F.smooth_l1_loss(pred, box_t, reduction="none", beta=1.0)
            return torch.autograd.grad(loss, pred, g)

        out.append(("softmax_ce", f"{n}x{SSD_CLASSES} f32, per element", ce))
        out.append(("smooth_l1", f"{n}x4 f32, beta 1", sl1))
    return out


def rows_box_iou(ctx):
    if torchvision is None:
        return "torchvision not importable"
    B, G = ctx.batch(32, 4), 20
    anchors = random_boxes((SSD_ANCHORS,), 300.0, ctx.gen, ctx.device)
    gt = random_boxes((B, G), 300.0, ctx.gen, ctx.device)
    counts = (1 + torch.randint(0, G, (B,), generator=ctx.gen)).tolist()  # 1 .. 20 real GT per image

    def fn():
        return [box_iou(gt[i, :counts[i]], anchors) for i in range(B)]

    return [("box_iou", f"batched {B} img x {G} GT x {SSD_ANCHORS} anchors f32 (box_iou per image)", fn)]


def rows_box_coder(ctx):
    out = []
    which = "torchvision BoxCoder" if TVBoxCoder is not None else "BoxCoder formula in torch"
    shapes = [(ctx.batch(32, 2), SSD_ANCHORS, (10.0, 10.0, 5.0, 5.0), 300.0, "(SSD300), weights 10,10,5,5"),
              (ctx.batch(16, 1), RETINA_ANCHORS, (1.0, 1.0, 1.0, 1.0), 512.0, "(RetinaNet 512), weights 1")]
    for B, A, weights, side, label in shapes:
        coder = box_coder(weights)
        anchors = random_boxes((A,), side, ctx.gen, ctx.device).repeat(B, 1)  # one row per (image, anchor)
        gt = random_boxes((B * A,), side, ctx.gen, ctx.device)
        codes = ctx.randn(B * A, 4) * 0.5

        def enc(coder=coder, gt=gt, anchors=anchors):
            return coder.encode_single(gt, anchors)

        def dec(coder=coder, codes=codes, anchors=anchors):
            return coder.decode_single(codes, anchors)

        out.append(("box_encode", f"{B}x{A} {label} f32, {which}", enc))
        out.append(("box_decode", f"{B}x{A} {label} f32, {which}", dec))
    return out


def rows_detect_postprocess(ctx):
    if torchvision is None:
        return "torchvision not importable"
    from torchvision.ops import boxes as box_ops

    B, A, K = ctx.batch(32, 2), SSD_ANCHORS, SSD_CLASSES
    score_thresh, topk_candidates, nms_thresh, detections_per_img = 0.01, 400, 0.45, 200
    logits = ctx.randn(B, A, K)
    regression = ctx.randn(B, A, 4) * 0.5
    anchors = random_boxes((A,), 300.0, ctx.gen, ctx.device)
    coder = box_coder((10.0, 10.0, 5.0, 5.0))

    def fn():  # torchvision SSD.postprocess_detections, image by image
        scores_all = F.softmax(logits, dim=-1)
        results = []
        for i in range(B):
            boxes = coder.decode_single(regression[i], anchors)
            boxes = box_ops.clip_boxes_to_image(boxes, (300, 300))
            scores = scores_all[i]
            image_boxes, image_scores, image_labels = [], [], []
            for label in range(1, K):
                score = scores[:, label]
                keep = score > score_thresh
                score, box = score[keep], boxes[keep]
                num_topk = min(topk_candidates, score.size(0))
                score, idxs = score.topk(num_topk)
                image_boxes.append(box[idxs])
                image_scores.append(score)
                image_labels.append(torch.full_like(idxs, label))
            image_boxes = torch.cat(image_boxes, dim=0)
            image_scores = torch.cat(image_scores, dim=0)
            image_labels = torch.cat(image_labels, dim=0)
            keep = box_ops.batched_nms(image_boxes, image_scores, image_labels, nms_thresh)[:detections_per_img]
            results.append((image_boxes[keep], image_scores[keep], image_labels[keep]))
        return results

    return [("detect_postprocess",
             f"SSD300 batch {B}: {A} anchors x {K} classes, thresh 0.01, top 400/class, nms 0.45, keep 200", fn)]


def rows_roi_align(ctx):
    """torchvision.ops.MultiScaleRoIAlign at Faster R-CNN R50-FPN shapes, as apps/bench/rows_roi_align.cpp:
    P2..P5 of an 800x800 image, 2 images x 256 channels, 2 x 512 RoIs (sides log-uniform in [16, 800],
    centres uniform), 7x7, sampling ratio 2."""
    if torchvision is None:
        return "torchvision is not importable"
    from torchvision.ops import MultiScaleRoIAlign

    per_image = 512 if ctx.gpu else 32
    feats = {str(l): ctx.randn(2, 256, 800 // (4 << l), 800 // (4 << l)) for l in range(4)}
    boxes = []
    for _ in range(2):
        wh = 16.0 * torch.exp(torch.rand(per_image, 2, generator=ctx.gen) * math.log(50.0))
        centre = torch.rand(per_image, 2, generator=ctx.gen) * 800.0
        boxes.append(torch.cat([centre - wh / 2, centre + wh / 2], dim=1).to(ctx.device))
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    image_shapes = [(800, 800)] * 2
    shape = f"P2-P5 of 800x800, 2x256ch, 2x{per_image} rois, 7x7 sr2 f32"

    def fwd():
        with torch.no_grad():
            return pooler(feats, boxes, image_shapes)

    def graph():
        xs = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
        y = pooler(xs, boxes, image_shapes)
        return xs, y, ctx.randn(*y.shape)

    xs, y, gy = graph()

    def bwd():  # backward alone, on the graph of one forward
        return torch.autograd.grad(y, list(xs.values()), gy, retain_graph=True)

    rows = [("roi_align_fwd", shape, fwd), ("roi_align_bwd", shape, bwd)]
    if ctx.gpu:
        # torch.use_deterministic_algorithms: torchvision's roi_align falls back to the
        # pure-PyTorch _roi_align on CUDA (its autograd graph is built under the flag).
        torch.use_deterministic_algorithms(True)
        xd, yd, gd = graph()
        torch.use_deterministic_algorithms(False)

        def bwd_det():
            torch.use_deterministic_algorithms(True)
            try:
                return torch.autograd.grad(yd, list(xd.values()), gd, retain_graph=True)
            finally:
                torch.use_deterministic_algorithms(False)

        rows.append(("roi_align_bwd_det", shape + ", deterministic", bwd_det))
    return rows
FRCNN_LEVELS = [3 * 200 * 200, 3 * 100 * 100, 3 * 50 * 50, 3 * 25 * 25, 3 * 13 * 13]  # P2..P6 at 800x800


def rows_two_stage(ctx):
    """Faster R-CNN R50-FPN utilities at 800x800, batch 2 (bench_kernels rows_two_stage.cpp)."""
    if torchvision is None:
        return "torchvision not importable"
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

    out = []
    B, A = 2, sum(FRCNN_LEVELS)
    anchors = random_boxes((A,), 800.0, ctx.gen, ctx.device)
    objectness = ctx.randn(B, A) * 2.0
    deltas = ctx.randn(B * A, 4) * 0.3
    for n, mode in ((1000, "test"), (2000, "train")):
        rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 3), 0.7, 0.3, 256, 0.5,
                                    dict(training=n, testing=n), dict(training=n, testing=n), 0.7).eval()

        def proposals(rpn=rpn):  # as RegionProposalNetwork.forward: decode every anchor, then filter
            boxes = rpn.box_coder.decode(deltas, [anchors] * B).view(B, -1, 4)
            return rpn.filter_proposals(boxes, objectness.reshape(-1, 1), [(800, 800)] * B, FRCNN_LEVELS)

        out.append(("rpn_proposals", f"FRCNN 800x800 {B}x{A} anchors P2-P6, pre {n}/lvl, post {n} ({mode}); "
                    "decode of all anchors + filter_proposals", proposals))

    per, C = 1000, 91
    logits = ctx.randn(B * per, C) * 2.0
    regression = ctx.randn(B * per, 4 * C) * 0.5
    rois = [random_boxes((per,), 800.0, ctx.gen, ctx.device) for _ in range(B)]
    heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100).eval()

    def box_head():
        return heads.postprocess_detections(logits, regression, rois, [(800, 800)] * B)

    out.append(("box_head_postprocess", f"FRCNN {B} img x {per} RoIs x {C} cls, logits N(0,2), 0.05, NMS 0.5, "
                "top 100 (postprocess_detections)", box_head))

    gt = random_boxes((B, 20), 800.0, ctx.gen, ctx.device)
    props = random_boxes((B, 2020), 800.0, ctx.gen, ctx.device)
    counts = [(20, 2020), (13, 2013)]

    def iou():
        return [box_iou(gt[i, :g], props[i, :p]) for i, (g, p) in enumerate(counts)]

    out.append(("box_iou_per_image", f"FRCNN RoI matching: {B} img x 20 GT x 2020 proposals f32 (box_iou per image)",
                iou))

    u = torch.rand(B, A, generator=ctx.gen)
    labels = torch.where(u < 0.002, 1, torch.where(u < 0.9, 0, -1)).to(ctx.device)
    sampler = det_utils.BalancedPositiveNegativeSampler(256, 0.5)

    def sample():
        return sampler(list(labels))

    out.append(("sample_balanced", f"RPN {B}x{A} labels, 256 per image, 0.5 (BalancedPositiveNegativeSampler)",
                sample))
    return out


ROW_GROUPS = [
    ("conv2d_dilated", rows_conv2d_dilated),
    ("conv3x3", rows_conv3x3),
    ("conv3x3_layers", rows_conv3x3_layers),
    ("l2norm", rows_l2norm),
    ("softmax_ce / smooth_l1", rows_softmax_ce_smooth_l1),
    ("box_iou", rows_box_iou),
    ("box_encode / box_decode", rows_box_coder),
    ("hard_negative_mining", rows_hard_negative_mining),
    ("focal_loss", rows_focal_loss),
    ("roi_align", rows_roi_align),
    ("nms", rows_nms),
    ("detect_postprocess", rows_detect_postprocess),
    ("two-stage (Faster R-CNN)", rows_two_stage),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None,
                    help="default: cuda when available, else cpu")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 50 on cuda, 3 on cpu)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up runs (default 5 on cuda, 1 on cpu)")
    ap.add_argument("--only", default="", help="comma-separated row names (default: all)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    if torch is None:
        print("bench_torch: PyTorch is not importable", file=sys.stderr)
        return 1
    dev_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev_name == "cuda" and not torch.cuda.is_available():
        print("bench_torch: --device cuda but no CUDA device", file=sys.stderr)
        return 1
    device = torch.device(dev_name)
    gpu = device.type == "cuda"
    reps = args.reps or (50 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    only = {s for s in args.only.split(",") if s}
    if gpu:
        torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape
    torch.backends.cuda.matmul.allow_tf32 = False

    timer = Timer(device, reps, warmup)
    ctx = Ctx(device)
    label = "torch-" + device.type
    header = (f"bench_torch: torch {torch.__version__}, torchvision "
              f"{torchvision.__version__ if torchvision else 'not importable'}, device "
              f"{torch.cuda.get_device_name(device) if gpu else 'cpu'}, reps {reps}, warm-up {warmup}")
    print(header)
    rows = []
    for group, make in ROW_GROUPS:
        made = make(ctx)
        if isinstance(made, str):
            print(f"{group}: skipped: {made}")
            continue
        for name, shape, fn in made:
            if only and name not in only:
                continue
            med, lo, hi = timer(fn)
            rows.append({"name": name, "device": label, "shape": shape, "median_ms": med, "min_ms": lo, "max_ms": hi})
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default, restored

    print(f"{'name':<24} {'device':<10} {'shape':<84} {'median_ms':>10} {'min_ms':>10} {'max_ms':>10}")
    for r in rows:
        print(f"{r['name']:<24} {r['device']:<10} {r['shape']:<84} {r['median_ms']:>10.3f} {r['min_ms']:>10.3f} "
              f"{r['max_ms']:>10.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "bench_torch", "header": header, "reps": reps, "warmup": warmup, "rows": rows}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
