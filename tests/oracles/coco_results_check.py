#!/usr/bin/env python3
"""pycocotools' COCOeval (bbox) on a COCO results file: the oracle for ssd_eval's COCO AP.

    coco_results_check.py --gt instances.json --results results.json [--expect eval.json] [--tol 1e-4]
                          [--min-ap50 X]

Prints COCOeval's 12 stats as one JSON line on stdout ({"stats": [...], "pycocotools": version});
pycocotools' own chatter and its summary table go to stderr. With --expect (the output of
`ssd_eval --gt GT --det results.json --json`) it also compares stats[0..5] with ssd_eval's
map_coco, ap50, ap75, aps, apm, apl and exits 1, naming each that differs by more than --tol.
Test-only: never a run-time dependency of the project. Exit 2 on unusable input.
"""
import argparse
import contextlib
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt", required=True, help="COCO instances JSON")
    ap.add_argument("--results", required=True, help="COCO results JSON (a list)")
    ap.add_argument("--expect", help="ssd_eval --json output to compare with")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--min-ap50", type=float, default=None,
                    help="also fail when pycocotools' AP50 is below this (a comparison of zeros proves little)")
    a = ap.parse_args()

    from importlib import metadata
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with open(a.results) as f:
        results = json.load(f)
    if not isinstance(results, list) or not results:
        print(f"coco_results_check: {a.results}: not a non-empty list (pycocotools cannot load it)", file=sys.stderr)
        return 2
    with contextlib.redirect_stdout(sys.stderr):
        gt = COCO(a.gt)
        dt = gt.loadRes(a.results)
        ev = COCOeval(gt, dt, "bbox")  # defaults: maxDets 1/10/100, areas all/small/medium/large
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    print(json.dumps({"stats": stats, "pycocotools": metadata.version("pycocotools")}))
    if not a.expect:
        return 0
    with open(a.expect) as f:
        ours = json.load(f)
    names = ["map_coco", "ap50", "ap75", "aps", "apm", "apl"]
    bad = []
    for i, name in enumerate(names):
        diff = abs(stats[i] - float(ours[name]))
        print(f"{name:9s} ssd_eval {float(ours[name]):.6f}  pycocotools stats[{i}] {stats[i]:.6f}  |diff| {diff:.2e}",
              file=sys.stderr)
        if diff > a.tol:
            bad.append(f"{name}: ssd_eval {ours[name]} vs pycocotools {stats[i]}")
    if a.min_ap50 is not None and stats[1] < a.min_ap50:
        bad.append(f"AP50 {stats[1]} is below --min-ap50 {a.min_ap50}")
    if bad:
        print("coco_results_check: differ by more than %g: %s" % (a.tol, "; ".join(bad)), file=sys.stderr)
        return 1
    print(f"coco_results_check: ssd_eval's COCO AP / AP50 / AP75 / APs / APm / APl equal pycocotools' to {a.tol:g}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
