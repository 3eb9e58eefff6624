#!/usr/bin/env python3
"""PyTorch / torchvision end-to-end timings, the peer figures of apps/bench_models.cpp.

Same flags and the same JSON rows as bench_models, so that one run of each on the same
machine gives our / torch ratios:

    build/apps/bench_models      --device cpu --model tiny_ssd,ssd300_vgg16 --reps 3 --json ours.json
    python3 tools/bench_torch_models.py --device cpu --model tiny_ssd,ssd300_vgg16 --reps 3 --json torch.json
    python3 tools/bench_torch_models.py --loader DIR --json loader_torch.json   # the input pipeline

Models (random initialisation, weights=None and weights_backbone=None):
  * ssd300_vgg16: torchvision.models.detection.ssd300_vgg16, 21 classes (VOC), input 300.
  * ssd512_vgg16: the same network at 512 (torchvision has no SSD512 preset; the anchors
    follow torchvision's default generator at that size, as our ssd512 does its own).
  * retinanet_resnet50_fpn: torchvision's RetinaNet v1 layout (ResNet-50, FPN P3-P7) built
    with FrozenBatchNorm2d, conv1 and layer1 frozen (trainable layers 3), as ours is; 91
    classes (COCO), input 512x512 (min_size = max_size = 512).
  * fasterrcnn_resnet50_fpn: torchvision's FasterRCNN on the same backbone built the same way
    (FPN P2-P6), 91 classes, input 800x800 (min_size = max_size = 800; ours fits images into
    the same canvas keeping their aspect ratio).
  * tiny_ssd: d2l's TinySSD as models/src/tiny_ssd.cpp builds it (three down-sample blocks
    16/32/64, three of 128, a global max pool; 4 anchors per location; 3x3 heads), with the
    SSD loss (IoU 0.5 matching, 3:1 hard negatives, smooth L1) and SSD post-processing
    written here; input 256, 21 classes.
torchvision's detectors run as a user runs them: model(images, targets) in train mode gives
the loss dict; in eval mode model(images) includes its transform (normalise, resize to the
same size) and post-processing, detections returned as tensors (copied to the host here).

Modes: train (forward + loss + backward + SGD step, momentum 0.9, wd 5e-4), infer at batch
1 and --infer-batch. Precisions: fp32 (TF32 off), tf32 (TF32 on for matmul and cuDNN), bf16
(torch.autocast bfloat16, CUDA). --compile wraps the model in torch.compile. On the CPU
torch.set_num_threads(--threads, default: OMP_NUM_THREADS, else all cores, as our OpenMP
default).

--loader DIR times torchvision's transforms v2 SSD pipeline on one thread on the JPEGs of
a VOC folder (e.g. `ssd_data synth` output): read + decode_jpeg, RandomPhotometricDistort,
RandomZoomOut (mean fill, up to 4x), RandomIoUCrop, RandomHorizontalFlip, Resize to
--input-size (bilinear, no antialias, like ours), ToDtype float32 and Normalize.

Python is a measuring tool only; nothing in the project runs it at run time.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import xml.etree.ElementTree as ET

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision
    from torchvision.ops import batched_nms, box_iou
except ImportError:  # pragma: no cover
    torch = None

MODELS = ["tiny_ssd", "ssd300_vgg16", "ssd512_vgg16", "retinanet_resnet50_fpn", "fasterrcnn_resnet50_fpn"]
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def fail(msg):
    print(f"bench_torch_models: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- TinySSD (d2l) ------------------------------------------------------------------------


def down_sample_block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


TINY_SIZES = [(0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961)]
TINY_RATIOS = (1.0, 2.0, 0.5)


def tiny_anchors(size, device):
    """d2l multibox_prior per level (sizes s1, s2 at ratio 1, then s1 at the other ratios),
    location-major; corners in input pixels."""
    out, f = [], size
    fmaps = []
    for _ in range(3):
        f //= 2
    fmaps.append(f)
    for _ in range(3):
        f //= 2
        fmaps.append(f)
    fmaps.append(1)
    for (s1, s2), fm in zip(TINY_SIZES, fmaps):
        ws = [s1 * math.sqrt(TINY_RATIOS[0]), s2 * math.sqrt(TINY_RATIOS[0])] + [s1 * math.sqrt(r) for r in TINY_RATIOS[1:]]
        hs = [s1 / math.sqrt(TINY_RATIOS[0]), s2 / math.sqrt(TINY_RATIOS[0])] + [s1 / math.sqrt(r) for r in TINY_RATIOS[1:]]
        c = (torch.arange(fm, dtype=torch.float32) + 0.5) / fm
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)
        w, h = torch.tensor(ws).reshape(1, -1), torch.tensor(hs).reshape(1, -1)
        a = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=2).reshape(-1, 4)
        out.append(a * size)
    return torch.cat(out).to(device)


def encode(boxes, anchors, w=(10.0, 10.0, 5.0, 5.0)):
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + aw / 2, anchors[..., 1] + ah / 2
    bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    bx, by = boxes[..., 0] + bw / 2, boxes[..., 1] + bh / 2
    return torch.stack([w[0] * (bx - ax) / aw, w[1] * (by - ay) / ah,
                        w[2] * torch.log(bw / aw), w[3] * torch.log(bh / ah)], dim=-1)


def decode(d, anchors, w=(10.0, 10.0, 5.0, 5.0), clamp=math.log(1000.0 / 16)):
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    cx, cy = d[:, 0] / w[0] * aw + ax, d[:, 1] / w[1] * ah + ay
    bw = torch.exp((d[:, 2] / w[2]).clamp(max=clamp)) * aw
    bh = torch.exp((d[:, 3] / w[3]).clamp(max=clamp)) * ah
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)


class TinySSD(nn.Module):
    def __init__(self, num_classes, size=256):
        super().__init__()
        self.num_classes, self.size = num_classes, size
        base = nn.Sequential(down_sample_block(3, 16), down_sample_block(16, 32), down_sample_block(32, 64))
        self.blocks = nn.ModuleList([base, down_sample_block(64, 128), down_sample_block(128, 128),
                                     down_sample_block(128, 128), nn.AdaptiveMaxPool2d((1, 1))])
        chans = [64, 128, 128, 128, 128]
        self.cls = nn.ModuleList([nn.Conv2d(c, 4 * num_classes, 3, padding=1) for c in chans])
        self.box = nn.ModuleList([nn.Conv2d(c, 16, 3, padding=1) for c in chans])
        self.register_buffer("anchors", tiny_anchors(size, "cpu"), persistent=False)

    def heads(self, x):
        b = x.shape[0]
        cls, box = [], []
        for blk, c, r in zip(self.blocks, self.cls, self.box):
            x = blk(x)
            cls.append(c(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            box.append(r(x).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(box, 1), torch.cat(cls, 1)

    def loss(self, deltas, logits, gt_boxes, gt_labels):
        """SSD loss: IoU >= 0.5 matching plus each GT's best anchor, 3:1 hard negatives."""
        b, a, c = logits.shape
        with torch.no_grad():
            labels = torch.zeros(b, a, dtype=torch.int64, device=logits.device)
            matched = self.anchors.expand(b, a, 4).clone()
            for i in range(b):
                iou = box_iou(gt_boxes[i], self.anchors)  # [G, A]
                best, idx = iou.max(0)
                idx[iou.argmax(1)] = torch.arange(iou.shape[0], device=iou.device)
                best[iou.argmax(1)] = 1.0
                pos = best >= 0.5
                labels[i][pos] = gt_labels[i][idx[pos]]
                matched[i][pos] = gt_boxes[i][idx[pos]]
            box_t = encode(matched, self.anchors.expand(b, a, 4))
            pos_mask = labels > 0
            num_pos = pos_mask.sum().clamp(min=1).float()
        ce = F.cross_entropy(logits.reshape(-1, c).float(), labels.reshape(-1), reduction="none").reshape(b, a)
        with torch.no_grad():
            neg_loss = ce.detach().clone()
            neg_loss[pos_mask] = -math.inf
            order = neg_loss.sort(1, descending=True)[1]
            rank = order.sort(1)[1]
            k = (3 * pos_mask.sum(1, keepdim=True)).clamp(max=a)
            neg_mask = rank < k
        cls_loss = (ce * (pos_mask | neg_mask)).sum() / num_pos
        sl1 = F.smooth_l1_loss(deltas.float(), box_t, reduction="none", beta=1.0).sum(2)
        box_loss = (sl1 * pos_mask).sum() / num_pos
        return {"classification": cls_loss, "bbox_regression": box_loss}

    def postprocess(self, deltas, logits, score_thresh=0.01, topk=400, nms=0.45, keep=200):
        out = []
        scores_all = F.softmax(logits.float(), -1)
        for i in range(deltas.shape[0]):
            boxes = decode(deltas[i].float(), self.anchors).clamp(0, self.size)
            bs, ss, ls = [], [], []
            for c in range(1, self.num_classes):
                s = scores_all[i, :, c]
                m = s > score_thresh
                s, bx = s[m], boxes[m]
                s, j = s.topk(min(topk, s.numel()))
                bs.append(bx[j]), ss.append(s), ls.append(torch.full_like(j, c))
            bx, s, lab = torch.cat(bs), torch.cat(ss), torch.cat(ls)
            k = batched_nms(bx, s, lab, nms)[:keep]
            out.append({"boxes": bx[k], "scores": s[k], "labels": lab[k]})
        return out

    def forward(self, images, targets=None):
        deltas, logits = self.heads(images)
        if self.training:
            return self.loss(deltas, logits, torch.stack([t["boxes"] for t in targets]),
                             torch.stack([t["labels"] for t in targets]))
        return self.postprocess(deltas, logits)


# ---- torchvision models ------------------------------------------------------------------


def make_model(name, size=None):
    """The model and its input side (size: --input-size, else ours's default)."""
    from torchvision.models.detection import ssd300_vgg16, RetinaNet
    if name == "tiny_ssd":
        size = size or 256
        return TinySSD(21, size), size
    if name in ("ssd300_vgg16", "ssd512_vgg16"):
        size = size or (300 if name == "ssd300_vgg16" else 512)
        m = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)
        if size != 300:
            m.transform.fixed_size = (size, size)
            m.transform.min_size, m.transform.max_size = (size,), size
        return m, size
    if name == "retinanet_resnet50_fpn":
        from torchvision.models import resnet50
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops import misc as misc_nn_ops
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7
        backbone = resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
        # 3 trainable layers (conv1, layer1 frozen), as torchvision with weights and as ours
        backbone = _resnet_fpn_extractor(backbone, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        size = size or 512
        return RetinaNet(backbone, num_classes=91, min_size=size, max_size=size), size
    if name == "fasterrcnn_resnet50_fpn":
        from torchvision.models import resnet50
        from torchvision.models.detection import FasterRCNN
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops import misc as misc_nn_ops
        backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d), 3)
        size = size or 800
        return FasterRCNN(backbone, num_classes=91, min_size=size, max_size=size), size
    fail(f"--model: unknown model '{name}' (known: {', '.join(MODELS)})")


def synthetic_targets(n, size, device):
    f = torch.tensor([[0.10, 0.15, 0.45, 0.60], [0.50, 0.40, 0.90, 0.95], [0.30, 0.05, 0.55, 0.30]])
    return [{"boxes": (f * size).to(device), "labels": torch.tensor([1, 2, 3], device=device)} for _ in range(n)]


def images_for(name, n, size, device, gen):
    x = torch.randn(n, 3, size, size, generator=gen)
    if name != "tiny_ssd":  # torchvision's transform normalises 0..1 images itself
        x = (x * 0.25 + 0.45).clamp(0, 1)
    return x.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_reps(warmup, reps, step, device):
    for _ in range(warmup):
        step()
    sync(device)
    ms = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        sync(device)
        ms.append((time.perf_counter() - t) * 1000)
    return ms


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:  # the CPU has no allocator statistics: the process's peak resident set
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except Exception:
        return 0.0


def row(args, name, mode, batch, size, ms, mem, note, device, threads):
    med = statistics.median(ms)
    return {"model": name, "mode": mode, "batch": batch, "precision": args.precision, "device": device.type,
            "threads": threads, "input_size": size, "median_ms": med, "img_per_s": batch * 1000.0 / med,
            "peak_mem_mb": mem, "reps": len(ms), "note": note, "impl": "torch",
            "compile": bool(args.compile), "torch": torch.__version__,
            "peak_mem_kind": "allocator peak" if device.type == "cuda" else "process max RSS (not comparable)"}


def bench_model(args, name, device, threads, rows):
    torch.manual_seed(1)
    model, size = make_model(name, args.input_size)
    model.to(device)
    runner = torch.compile(model) if args.compile else model
    gen = torch.Generator().manual_seed(7)
    cpu = device.type == "cpu"
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    if "train" in args.modes:
        recipe = 16 if name in ("retinanet_resnet50_fpn", "fasterrcnn_resnet50_fpn") else 32
        batch = args.batch or (min(recipe, 4) if cpu else recipe)
        note = "recipe batch" if batch == recipe else f"recipe batch is {recipe}"
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
        x = images_for(name, batch, size, device, gen)
        t = synthetic_targets(batch, size, device)
        reset_peak(device)
        last = [0.0]

        def step():
            opt.zero_grad(set_to_none=True)
            with amp:
                losses = runner(list(x) if name != "tiny_ssd" else x, t)
            loss = sum(losses.values())
            loss.backward()
            opt.step()
            last[0] = loss.item()

        ms = time_reps(args.warmup, args.reps, step, device)
        if not math.isfinite(last[0]):
            fail(f"{name}: the training loss became {last[0]}")
        rows.append(row(args, name, "train", batch, size, ms, peak_mb(device), note, device, threads))
        print_row(rows[-1])
    if "infer" in args.modes:
        model.eval()
        big = args.infer_batch or (4 if cpu else 32)
        for batch in sorted({1, big}):
            x = images_for(name, batch, size, device, gen)
            reset_peak(device)

            def step():
                with torch.no_grad(), amp:
                    dets = runner(list(x) if name != "tiny_ssd" else x)
                return [d["boxes"].cpu() for d in dets]

            ms = time_reps(args.warmup, args.reps, step, device)
            note = "latency" if batch == 1 else "throughput" + ("" if batch == 32 else " (32 on a GPU)")
            rows.append(row(args, name, "infer", batch, size, ms, peak_mb(device), note, device, threads))
            print_row(rows[-1])


# ---- the input pipeline --------------------------------------------------------------------


def read_voc(root, split):
    ids_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(ids_file):
        fail(f"{root}: not a VOC folder ({ids_file} not found)")
    items = []
    for key in open(ids_file).read().split():
        tree = ET.parse(os.path.join(root, "Annotations", f"{key}.xml"))
        boxes = []
        for o in tree.findall("object"):
            bb = o.find("bndbox")
            boxes.append([float(bb.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")])
        items.append((os.path.join(root, "JPEGImages", f"{key}.jpg"), boxes))
    if not items:
        fail(f"{root}: no images in split {split}")
    return items


def bench_loader(args, rows):
    from torchvision import tv_tensors
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2
    torch.set_num_threads(1)
    size = args.input_size or 300
    items = read_voc(args.loader, args.split)
    pipeline = v2.Compose([
        v2.RandomPhotometricDistort(p=0.5),
        v2.RandomZoomOut(fill={tv_tensors.Image: [round(m) for m in MEAN], "others": 0}, side_range=(1.0, 4.0), p=0.5),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.Resize((size, size), antialias=False),
        v2.SanitizeBoundingBoxes(),
        v2.ToDtype(torch.float32, scale=False),
        v2.Normalize(MEAN, STD),
    ])
    torch.manual_seed(1)

    def one(i):
        path, boxes = items[i % len(items)]
        img = tv_tensors.Image(decode_jpeg(read_file(path)))
        h, w = img.shape[-2:]
        target = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes), format="XYXY", canvas_size=(h, w)),
                  "labels": torch.arange(1, len(boxes) + 1)}
        out, _ = pipeline(img, target)
        assert out.shape == (3, size, size)

    for i in range(min(4, len(items))):
        one(i)
    t = time.perf_counter()
    for i in range(args.loader_images):
        one(i)
    secs = time.perf_counter() - t
    ips = args.loader_images / secs
    rows.append({"model": "loader", "mode": "loader", "batch": 1, "precision": "-", "device": "cpu", "threads": 1,
                 "input_size": size, "median_ms": secs * 1000 / args.loader_images, "img_per_s": ips,
                 "peak_mem_mb": 0, "reps": args.loader_images, "impl": "torch", "torch": torch.__version__,
                 "img_per_s_16_cores_extrapolated": ips * 16, "dataset_images": len(items),
                 "note": "torchvision transforms v2: decode_jpeg + SSD augmentation + resize + normalise, one thread; "
                         f"x16 cores (extrapolated): {int(ips * 16)} img/s"})
    print_row(rows[-1])


def print_row(r):
    print(f"{r['model']:<24} {r['mode']:<6} {r['precision']:<5} {r['batch']:>6} {r['input_size']:>5} "
          f"{r['median_ms']:>10.2f} {r['img_per_s']:>10.2f} {r['peak_mem_mb']:>10.1f}  {r['note']}", flush=True)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 1 (argparse's default is usage + exit 2)
        fail(f"{message} (see --help)")


def positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def main():
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"])
    p.add_argument("--mode", default="train,infer")
    p.add_argument("--reps", type=positive, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=positive, default=None)
    p.add_argument("--infer-batch", type=positive, default=None)
    p.add_argument("--input-size", type=positive, default=None)
    p.add_argument("--threads", type=positive, default=None,
                   help="CPU threads (default: OMP_NUM_THREADS, else all cores, as ours)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--json", default=None)
    p.add_argument("--loader", default=None, help="time the transforms v2 pipeline on this VOC folder")
    p.add_argument("--split", default="trainval")
    p.add_argument("--loader-images", type=positive, default=64)
    args = p.parse_args()
    if torch is None:
        fail("torch and torchvision are not importable")
    args.modes = args.mode.split(",")
    if any(m not in ("train", "infer") for m in args.modes):
        fail(f"--mode: '{args.mode}' is not train, infer or train,infer")
    names = args.model.split(",")
    for n in names:
        if n not in MODELS:
            fail(f"--model: unknown model '{n}' (known: {', '.join(MODELS)})")
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    if args.device == "cpu" and args.precision != "fp32":
        fail(f"--precision {args.precision} needs --device cuda (our CPU path computes in fp32 only)")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is available")
    rows = []
    print(f"{'model':<24} {'mode':<6} {'prec':<5} {'batch':>6} {'size':>5} {'median_ms':>10} {'img/s':>10} "
          f"{'peak_MB':>10}  note")
    if args.loader:
        bench_loader(args, rows)
    else:
        device = torch.device(args.device)
        threads = 1
        if device.type == "cpu":
            # Ours uses OpenMP's default: OMP_NUM_THREADS when set, else every core.
            omp = os.environ.get("OMP_NUM_THREADS", "")
            threads = args.threads or (int(omp) if omp.isdigit() and int(omp) > 0 else os.cpu_count())
            torch.set_num_threads(threads)
        else:
            tf32 = args.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = True
        for n in names:
            bench_model(args, n, device, threads, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
