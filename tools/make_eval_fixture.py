#!/usr/bin/env python3
"""Generate the COCO-evaluation fixture in tests/fixtures/eval/ (deterministic, fixed seed).

Writes:
  gt.json            COCO instances ground truth: 10 images (ids 1..10, file names in id order,
                     so image-key order equals image-id order), categories 1, 2, 5 with GT and
                     7 without any GT, crowd regions, small / medium / large objects, GT `area`
                     differing from the box area (as for segment areas), two images without GT.
  detections.json    the project's detections format (bbox [x, y, w, h]), with jittered true
                     positives, duplicates, background false positives, detections on the images
                     without GT, detections of the GT-less category and one image with >100
                     detections of one category (tests maxDets).
  pycocotools.json   COCOeval (iouType bbox) stats[0:6] as map_coco, ap50, ap75, aps, apm, apl,
                     and the pycocotools / numpy versions.

pycocotools is needed only to run this script: pip install pycocotools.
Usage: python3 tools/make_eval_fixture.py [out_dir]
"""
import contextlib
import io
import json
import os
import random
import sys
from importlib import metadata

SEED = 20261121
W, H = 640, 480
CATS = [1, 2, 5]
EMPTY_CAT = 7


def clip_box(x, y, w, h):
    x = min(max(x, 0.0), W - 2.0)
    y = min(max(y, 0.0), H - 2.0)
    w = max(1.0, min(w, W - x))
    h = max(1.0, min(h, H - y))
    return [x, y, w, h]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "eval")
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(SEED)
    images, anns, det_images = [], [], []
    ann_id = 1
    used_scores = set()

    def score(lo, hi):
        while True:
            s = round(rng.uniform(lo, hi), 6)
            if s not in used_scores:
                used_scores.add(s)
                return s

    for i in range(10):
        img_id = i + 1
        fname = "img_%02d.jpg" % i
        images.append({"id": img_id, "file_name": fname, "width": W, "height": H})
        dets = []
        no_gt = i in (3, 7)
        if not no_gt:
            for _ in range(rng.randint(2, 6)):
                cat = rng.choice(CATS)
                # side lengths spanning small (< 32^2), medium and large (> 96^2) areas
                kind = rng.choice(["s", "m", "l"])
                side = {"s": (6, 30), "m": (33, 95), "l": (100, 260)}[kind]
                w, h = rng.uniform(*side), rng.uniform(*side)
                box = clip_box(rng.uniform(0, W - w), rng.uniform(0, H - h), w, h)
                crowd = 1 if rng.random() < 0.12 else 0
                area = box[2] * box[3] * rng.uniform(0.55, 0.95)  # like a segment area
                anns.append({"id": ann_id, "image_id": img_id, "category_id": cat, "bbox": box,
                             "area": area, "iscrowd": crowd})
                ann_id += 1
                # detections for this object: a good one (most of the time), sometimes a
                # duplicate, sometimes a poorly localised one
                if rng.random() < 0.85:
                    j = 0.15 if rng.random() < 0.7 else 0.45
                    dets.append((cat, clip_box(box[0] + rng.uniform(-j, j) * box[2],
                                               box[1] + rng.uniform(-j, j) * box[3],
                                               box[2] * rng.uniform(1 - j, 1 + j),
                                               box[3] * rng.uniform(1 - j, 1 + j)), score(0.3, 1.0)))
                if rng.random() < 0.3:
                    dets.append((cat, clip_box(box[0] + rng.uniform(-0.1, 0.1) * box[2],
                                               box[1] + rng.uniform(-0.1, 0.1) * box[3],
                                               box[2], box[3]), score(0.05, 0.9)))
                if rng.random() < 0.2:  # right place, wrong class
                    other = rng.choice([c for c in CATS if c != cat])
                    dets.append((other, list(box), score(0.05, 0.7)))
                if crowd:  # several detections inside a crowd region
                    for _ in range(3):
                        dets.append((cat, clip_box(box[0] + rng.uniform(0, 0.5) * box[2],
                                                   box[1] + rng.uniform(0, 0.5) * box[3],
                                                   box[2] * 0.4, box[3] * 0.4), score(0.05, 0.95)))
        # background false positives, also on the images without GT
        for _ in range(rng.randint(1, 4)):
            w, h = rng.uniform(8, 150), rng.uniform(8, 150)
            dets.append((rng.choice(CATS + [EMPTY_CAT]),
                         clip_box(rng.uniform(0, W - w), rng.uniform(0, H - h), w, h), score(0.01, 0.8)))
        if i == 5:  # more than maxDets=100 detections of one category on one image
            for _ in range(110):
                w, h = rng.uniform(10, 60), rng.uniform(10, 60)
                dets.append((CATS[0], clip_box(rng.uniform(0, W - w), rng.uniform(0, H - h), w, h),
                             score(0.001, 0.2)))
        det_images.append({"file": "images/" + fname, "width": W, "height": H, "detections": [
            {"category_id": c, "label": "c%d" % c, "score": s, "bbox": b} for (c, b, s) in dets]})

    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": "c%d" % c} for c in CATS + [EMPTY_CAT]]}
    with open(os.path.join(out_dir, "gt.json"), "w") as f:
        json.dump(gt, f, indent=1)
    with open(os.path.join(out_dir, "detections.json"), "w") as f:
        json.dump({"images": det_images}, f, indent=1)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(os.path.join(out_dir, "gt.json"))
        id_of = {im["file_name"]: im["id"] for im in images}
        results = [{"image_id": id_of[os.path.basename(im["file"])], "category_id": d["category_id"],
                    "bbox": d["bbox"], "score": d["score"]} for im in det_images for d in im["detections"]]
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["map_coco", "ap50", "ap75", "aps", "apm", "apl"]
    ref = {n: float(ev.stats[k]) for k, n in enumerate(names)}
    import numpy
    ref["pycocotools_version"] = metadata.version("pycocotools")
    ref["numpy_version"] = numpy.__version__
    ref["num_annotations"] = len(anns)
    ref["num_detections"] = len(results)
    with open(os.path.join(out_dir, "pycocotools.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(json.dumps(ref, indent=1))


if __name__ == "__main__":
    main()
