#!/usr/bin/env python3
"""Runs exported ONNX models in ONNX Runtime and compares with the engine's own outputs.

Usage: onnx_check.py DIR
For every DIR/<name>.onnx with DIR/<name>.ref.safetensors (written by ssd_export --reference):
runs the model on the reference's "images" and compares each output:
  raw heads (boxes, scores, anchors, features_*): |onnx - ours| <= atol + rtol |ours|;
  detections (detection_*): per image, the same number of detections, and after sorting by
  score the same labels, boxes within 1e-3 (relative to the box scale) and scores within 1e-4.
Exit 0: all match; 1: a mismatch (printed); 77: onnxruntime or numpy missing (a skip).
A test oracle only: the engine never runs Python.
"""
import json
import os
import struct
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the caller reports a skip
    print(f"SKIPPED: no Python oracle ({e})")
    sys.exit(77)

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def compare_raw(name, got, want, failures):
    # float32 through tens of layers: errors relative to the tensor's scale.
    atol = 1e-4 * max(1.0, float(np.abs(want).max(initial=0)))
    rtol = 1e-4
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = err > atol + rtol * np.abs(want)
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape} != {want.shape}")
    elif bad.any():
        failures.append(f"{name}: {int(bad.sum())} of {bad.size} values differ, max error {err.max():.3g} "
                        f"(values up to {float(np.abs(want).max()):.3g})")
    return float(err.max()) if err.size else 0.0


def compare_detections(ref, got, failures):
    nb = ref["images"].shape[0]
    total = 0
    for b in range(nb):
        want_i = np.nonzero(ref["detection_batch"] == b)[0]
        got_i = np.nonzero(got["detection_batch"] == b)[0]
        if len(want_i) != len(got_i):
            failures.append(f"image {b}: {len(got_i)} detections in ONNX, {len(want_i)} here")
            continue
        wo = want_i[np.argsort(-ref["detection_scores"][want_i], kind="stable")]
        go = got_i[np.argsort(-got["detection_scores"][got_i], kind="stable")]
        ws, gs = ref["detection_scores"][wo], got["detection_scores"][go]
        if np.abs(ws - gs).max(initial=0) > 1e-4:
            failures.append(f"image {b}: scores differ by {np.abs(ws - gs).max():.3g}")
            continue
        wl, gl = ref["detection_labels"][wo], got["detection_labels"][go]
        wb, gb = ref["detection_boxes"][wo], got["detection_boxes"][go]
        scale = max(1.0, float(np.abs(wb).max(initial=0)))
        for k in range(len(wo)):
            # Scores equal within the tolerance may come in either order: match among them.
            tie = np.nonzero(np.abs(gs - ws[k]) <= 1e-4)[0]
            ok = any(gl[j] == wl[k] and np.abs(gb[j] - wb[k]).max() <= 1e-3 * scale for j in tie)
            if not ok:
                failures.append(f"image {b}: detection {k} (label {wl[k]}, score {ws[k]:.6f}, box {wb[k]}) "
                                "not found in the ONNX output")
                break
        total += len(wo)
    return total


def main():
    d = sys.argv[1]
    names = sorted(f[:-5] for f in os.listdir(d) if f.endswith(".onnx"))
    if not names:
        print(f"onnx_check: no .onnx files in {d}")
        return 1
    failed = 0
    for name in names:
        ref = read_safetensors(os.path.join(d, name + ".ref.safetensors"))
        sess = ort.InferenceSession(os.path.join(d, name + ".onnx"), providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
        got = dict(zip(outs, sess.run(None, {"images": ref["images"]})))
        failures = []
        if "detection_boxes" in got:
            n = compare_detections(ref, got, failures)
            summary = f"{n} detections"
        else:
            errs = [compare_raw(o, got[o], ref[o], failures) for o in outs]
            summary = f"max abs error {max(errs):.3g} over {', '.join(outs)}"
        status = "ok" if not failures else "MISMATCH"
        print(f"onnx_check: {name}: {status} ({summary}; onnxruntime {ort.__version__})")
        for f in failures[:10]:
            print(f"  {f}")
        failed += bool(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
