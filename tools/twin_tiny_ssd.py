#!/usr/bin/env python3
"""A PyTorch twin of tiny_ssd's training step, replayed on the engine's own batches.

ssd_train with ENGINE_DUMP_BATCHES=DIR (apps/common/batch_dump.h) writes the weights before
the first step (DIR/weights_00000.safetensors), after step 1 and after the last dumped step,
and for each step the network input after augmentation and normalisation, the targets as
the loss gets them, the anchors, the engine's head outputs and its loss parts, gradient
norm and largest |logit|. This tool loads the same weights into d2l's TinySSD (the module
of tools/bench_torch_models.py) and trains it on the same batches with the same recipe:

  * loss: models/src/tiny_ssd.cpp, written again here: torchvision's SSDMatcher (IoU >= 0.5
    plus each ground truth's best anchor, the highest GT index winning a shared anchor), an
    anchor claimed by an ignored (difficult) GT is neither positive nor negative; box coder
    weights (10, 10, 5, 5); cross-entropy; per image the k = min(3 P_b, candidates) hardest
    negatives (none in an image without positives; ties: the lower anchor); smooth L1
    (beta 1) on the positives; both parts divided by max(1, positives of the batch);
  * optimizer: torch.optim.SGD, momentum 0.9, weight decay 5e-4 on every parameter;
    lr = base x (0.001 + 0.999 i / warmup) for iteration i < warmup (0-based), x 0.1 at each
    milestone (apps/common/trainer.cpp: LinearWarmup over MultiStep);
  * BatchNorm: training mode, eps 1e-5, momentum 0.1 (nn.BatchNorm2d's defaults, ours too).

Per step it prints (and with --log writes as JSON lines) the engine's and the twin's loss,
classification and box parts, positives, largest |logit| and global gradient norm (the log
also has, per feature scale, the twin's head input: share of positive activations, largest
value, RMS), and
  * fwd_diff: the largest |twin logit - engine logit| on the batch (the forward pass; only
    meaningful while the weights still agree),
  * loss_on_ours: the twin's loss evaluated on the ENGINE's head outputs (isolates the loss
    function from the forward pass: it must equal the engine's loss to rounding).
At step 1 and at the last step the twin's weights are compared with the engine's
(update parity: |twin delta - engine delta| / |engine delta| per tensor). Where the dump
holds the engine's weights of the step before (ENGINE_DUMP_WEIGHTS_EVERY=1), the step is
also run from them ("on engine weights": forward difference, loss, gradient norm along the
engine's own trajectory). --perturb EPS trains a second twin from weights x (1 + EPS N(0,1))
beside the first and logs their logit gap: how fast this recipe amplifies rounding-sized
differences on its own.

--init torch (seeded torch default init) and --init torchvision-heads (the dump's backbone,
heads xavier_uniform with zero bias as torchvision's SSD heads) run the twin from other
starting points on the same batches (no parity then: a different experiment).

    ENGINE_DUMP_BATCHES=dump ENGINE_DUMP_STEPS=300 build/apps/ssd_train --arch tiny_ssd ...
    python3 tools/twin_tiny_ssd.py --dump dump --log twin.jsonl

A measuring tool only; nothing in the project runs it at run time.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch_models import TinySSD, encode  # noqa: E402

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
          "U8": torch.uint8, "BF16": torch.bfloat16, "F16": torch.float16}


def read_safetensors(path):
    """(tensors by name, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[h["dtype"]]) if b > a else \
            torch.empty(0, dtype=DTYPES[h["dtype"]])
        out[name] = t.reshape(h["shape"])
    return out, meta


def torch_name(ours):
    """Engine state-dict name -> bench TinySSD name."""
    for a, b in (("backbone.blocks.", "blocks."), ("head.classification_head.module_list.", "cls."),
                 ("head.regression_head.module_list.", "box.")):
        if ours.startswith(a):
            return b + ours[len(a):]
    return None


def load_engine_weights(model, path):
    w, _ = read_safetensors(path)
    sd = {}
    for k, v in w.items():
        n = torch_name(k)
        if n is not None:
            sd[n] = v.clone()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)


def engine_state(path):
    w, _ = read_safetensors(path)
    return {torch_name(k): v for k, v in w.items() if torch_name(k) is not None}


def ssd_loss(deltas, logits, anchors, boxes, labels, counts, ignore, thr=0.5):
    """models/src/tiny_ssd.cpp's loss. Returns (cls, box, positives, per-anchor labels)."""
    b, a, c = logits.shape
    with torch.no_grad():
        lab = torch.zeros(b, a, dtype=torch.int64)
        tgt = anchors.expand(b, a, 4).clone()
        for i in range(b):
            g = int(counts[i])
            if g == 0:
                continue
            iou = box_iou(boxes[i, :g], anchors)  # [G, A]
            vals, idx = iou.max(0)
            m = torch.where(vals >= thr, idx, torch.full_like(idx, -1))
            best = iou.argmax(1)
            for j in range(g):  # in GT order: the highest GT index wins a shared anchor
                m[best[j]] = j
            hit = m >= 0
            ign = ignore[i, :g].bool()[m.clamp(min=0)] & hit
            pos = hit & ~ign
            lab[i][pos] = labels[i, :g][m[pos]]
            lab[i][ign] = -1
            tgt[i][pos] = boxes[i, :g][m[pos]]
        pos_mask = lab > 0
        n_pos = int(pos_mask.sum())
        enc = encode(tgt, anchors.expand(b, a, 4))
    ce = F.cross_entropy(logits.reshape(-1, c), lab.reshape(-1), reduction="none", ignore_index=-1).reshape(b, a)
    with torch.no_grad():
        cand = lab == 0
        key = torch.where(cand, ce.detach(), torch.full_like(ce, -math.inf))
        order = torch.sort(key, dim=1, descending=True, stable=True)[1]
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(a).expand(b, a).contiguous())
        k = torch.minimum(torch.floor(3.0 * pos_mask.sum(1, keepdim=True).double()).long(),
                          cand.sum(1, keepdim=True))
        neg = (rank < k) & cand
        sel = (pos_mask | neg).to(ce.dtype)
    inv_n = 1.0 / max(1, n_pos)
    cls = (ce * sel).sum() * inv_n
    sl1 = F.smooth_l1_loss(deltas, enc, reduction="none", beta=1.0)
    box = (sl1 * pos_mask.unsqueeze(2).to(sl1.dtype)).sum() * inv_n
    return cls, box, n_pos, lab


def heads_with_stats(model, images):
    """model.heads(images) and, per feature scale, the head input's share of positive
    activations ("alive": after ReLU and pooling), its largest value and its RMS."""
    b = images.shape[0]
    cls, box, stats, x = [], [], [], images
    for blk, c, r in zip(model.blocks, model.cls, model.box):
        x = blk(x)
        with torch.no_grad():
            stats.append({"alive": float((x > 0).float().mean()), "max": float(x.max()),
                          "rms": float(x.pow(2).mean().sqrt())})
        cls.append(c(x).permute(0, 2, 3, 1).reshape(b, -1, model.num_classes))
        box.append(r(x).permute(0, 2, 3, 1).reshape(b, -1, 4))
    return torch.cat(box, 1), torch.cat(cls, 1), stats


def lr_at(it, base, warmup, milestones):
    lr = base * (0.1 ** sum(1 for m in milestones if m <= it))
    if it < warmup:
        lr *= 0.001 + (1 - 0.001) * it / warmup
    return lr


def grad_norm(model):
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None))


def compare_update(model, before, path, label):
    """Per tensor |twin delta - engine delta| / |engine delta| against the engine's weights."""
    ours = engine_state(path)
    worst, worst_name, rows = 0.0, "", []
    for n, t in model.state_dict().items():
        if n.endswith("num_batches_tracked"):
            continue
        d_twin = (t.double() - before[n].double())
        d_ours = (ours[n].double() - before[n].double())
        den = float(d_ours.norm())
        rel = float((d_twin - d_ours).norm()) / den if den > 0 else float((d_twin - d_ours).norm())
        rows.append((n, rel, den))
        if rel > worst:
            worst, worst_name = rel, n
    print(f"{label}: update parity over {len(rows)} tensors: worst relative difference {worst:.3g} ({worst_name}); "
          f"median {sorted(r for _, r, _ in rows)[len(rows) // 2]:.3g}")
    for n, rel, dn in sorted(rows, key=lambda r: -r[1])[:4]:
        print(f"    {n}: relative {rel:.3g}, |engine delta| {dn:.3g}")
    return worst


def spikes(loss, window=20, ratio=1.35):
    """Steps (1-based) whose loss exceeds `ratio` x the median of the `window` steps before,
    and the largest such ratio."""
    out, worst = [], 0.0
    for i in range(window, len(loss)):
        prev = sorted(loss[i - window:i])
        med = 0.5 * (prev[window // 2 - 1] + prev[window // 2]) if window % 2 == 0 else prev[window // 2]
        r = loss[i] / med
        worst = max(worst, r)
        if r > ratio:
            out.append((i + 1, round(loss[i], 2), round(r, 2)))
    return out, worst


def summarise(rows):
    """Parity along the engine's trajectory and the spikes / largest logits of each run."""
    on = [r["on_engine_weights"] | {"engine": r["engine"]} for r in rows if "on_engine_weights" in r]
    if on:
        rel = lambda a, b: abs(a - b) / max(abs(b), 1e-12)  # noqa: E731
        parts = [f"largest |logit| difference {max(o['fwd_diff'] for o in on):.3g}",
                 f"loss relative {max(rel(o['loss'], o['engine']['loss']) for o in on):.3g}",
                 f"gradient norm relative {max(rel(o['grad_norm'], o['engine']['grad_norm']) for o in on):.3g}"]
        upd = [o for o in on if "update_rel" in o]
        if upd:
            parts.append(f"SGD update relative {max(o['update_rel'] for o in upd):.3g}")
            parts.append(f"BatchNorm running statistics relative {max(o['running_rel'] for o in upd):.3g}")
        print(f"parity on the engine's weights, {len(on)} steps: " + ", ".join(parts))
    if rows:
        print(f"the loss function on the engine's head outputs: relative difference "
              f"{max(abs(r['loss_on_ours'] - r['engine']['loss']) / r['engine']['loss'] for r in rows):.3g}")
    runs = [("engine", [r["engine"]["loss"] for r in rows], [r["engine"]["max_abs_logit"] for r in rows]),
            ("twin", [r["twin"]["loss"] for r in rows], [r["twin"]["max_abs_logit"] for r in rows])]
    if rows and "perturbed" in rows[0]:
        runs.append(("perturbed twin", [r["perturbed"]["loss"] for r in rows],
                     [r["perturbed"].get("max_abs_logit", float("nan")) for r in rows]))
    steps = [r["step"] for r in rows]
    for name, loss, ml in runs:
        sp, worst = spikes(loss)
        top = sorted(((v, s) for v, s in zip(ml, steps) if v == v), reverse=True)[:3]  # NaN: not logged
        tail = loss[-50:]
        print(f"{name}: loss > 1.35 x median of the 20 steps before at {sp or 'no step'}; largest ratio {worst:.2f}; "
              f"largest |logit| " + ", ".join(f"{v:.1f} (step {s})" for v, s in top) +
              f"; mean loss of the last {len(tail)} steps {sum(tail) / max(1, len(tail)):.3f}")


@torch.no_grad()
def replay_update(ref, ref_opt, lr, after):
    """ref_opt's SGD step (torch.optim.SGD, its momentum buffers chained over the replayed
    steps) from the engine's weights in `ref`, against the engine's weights `after` the step:
    relative L2 differences of the update (all parameters) and of BatchNorm's running
    statistics (updated by the forward just run)."""
    before = {n: p.detach().clone() for n, p in ref.named_parameters()}
    for g in ref_opt.param_groups:
        g["lr"] = lr
    ref_opt.step()
    num = den = 0.0
    for n, p in ref.named_parameters():
        num += float((p.double() - after[n].double()).pow(2).sum())
        den += float((after[n].double() - before[n].double()).pow(2).sum())
    rnum = rden = 0.0
    for n, b in ref.named_buffers():
        if n in after and not n.endswith("num_batches_tracked"):
            rnum += float((b.double() - after[n].double()).pow(2).sum())
            rden += float(after[n].double().pow(2).sum())
    return {"update_rel": math.sqrt(num / max(den, 1e-300)), "running_rel": math.sqrt(rnum / max(rden, 1e-300))}


def init_model(model, mode, dump, seed):
    if mode in ("dump", "torchvision-heads"):
        load_engine_weights(model, os.path.join(dump, "weights_00000.safetensors"))
    if mode == "torchvision-heads":
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in list(model.cls) + list(model.box):
                fan_in = conv.weight[0].numel()
                fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                conv.weight.copy_(torch.rand(conv.weight.shape, generator=g) * 2 * bound - bound)
                conv.bias.zero_()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", help="the ENGINE_DUMP_BATCHES folder")
    ap.add_argument("--summary", metavar="LOG", help="only summarise the JSON lines of an earlier --log")
    ap.add_argument("--steps", type=int, default=0, help="steps to replay (0: every dumped step)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--milestones", default="700,900")
    ap.add_argument("--init", choices=["dump", "torch", "torchvision-heads"], default="dump")
    ap.add_argument("--seed", type=int, default=0, help="--init torch / torchvision-heads")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-replay", action="store_true",
                    help="skip the steps from the engine's own weights (the twin's trajectory alone, ~2x faster)")
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="also train a second twin whose weights start x (1 + PERTURB x N(0,1)); log their logit gap")
    ap.add_argument("--log", help="JSON lines, one per step")
    args = ap.parse_args()
    if args.summary:
        with open(args.summary) as f:
            summarise([json.loads(line) for line in f if line.strip()])
        return
    if not args.dump:
        sys.exit("twin_tiny_ssd: give --dump DIR (or --summary LOG)")
    torch.set_num_threads(args.threads)
    milestones = [int(x) for x in args.milestones.split(",") if x]

    steps = sorted(int(f[5:10]) for f in os.listdir(args.dump) if f.startswith("step_") and f.endswith(".safetensors"))
    if not steps:
        sys.exit(f"twin_tiny_ssd: --dump: no step_*.safetensors in '{args.dump}'")
    if args.steps:
        steps = steps[:args.steps]
    first, meta = read_safetensors(os.path.join(args.dump, "step_00001.safetensors"))
    size = first["images"].shape[-1]
    num_classes = first["class_logits"].shape[-1]
    torch.manual_seed(args.seed)
    model = TinySSD(num_classes, size)
    init_model(model, args.init, args.dump, args.seed)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    ref = TinySSD(num_classes, size).train()  # the engine's weights of the step before, when dumped
    # Its optimizer: load_state_dict copies in place, so the momentum buffers chain over the
    # replayed steps (exact while every step's weights are dumped: ENGINE_DUMP_WEIGHTS_EVERY=1).
    ref_opt = torch.optim.SGD(ref.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    pert = popt = None
    if args.perturb > 0:  # a second twin, every weight x (1 + perturb x N(0, 1)): the trajectory's own sensitivity
        pert = TinySSD(num_classes, size).train()
        pert.load_state_dict(model.state_dict())
        g = torch.Generator().manual_seed(args.seed + 1)
        with torch.no_grad():
            for p in pert.parameters():
                p.mul_(1 + args.perturb * torch.randn(p.shape, generator=g))
        popt = torch.optim.SGD(pert.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    log = open(args.log, "w") if args.log else None
    rows = []
    before = {k: v.clone() for k, v in model.state_dict().items()}
    print("step   engine: loss    cls     box   |logit|  gnorm  |  twin: loss    cls     box   pos |logit|  gnorm"
          "  | fwd_diff loss_on_ours")
    for step in steps:
        t, meta = read_safetensors(os.path.join(args.dump, f"step_{step:05d}.safetensors"))
        assert int(meta["step"]) == step
        anchors = t["anchors"]
        if step == steps[0]:
            print(f"anchors: {anchors.shape[0]}, largest |engine - twin| "
                  f"{float((anchors - model.anchors).abs().max()):.3g} px")
        lr = lr_at(step - 1, args.lr, args.warmup, milestones)
        if abs(lr - float(meta["lr"])) > 1e-9 * max(1.0, lr):
            print(f"warning: step {step}: lr {lr:.9g} here, {meta['lr']} in the engine")
        for g in opt.param_groups:
            g["lr"] = lr
        ignore = t.get("ignore", torch.zeros_like(t["labels"], dtype=torch.uint8))
        with torch.no_grad():  # the loss function alone, on the engine's outputs
            c0, b0, _, _ = ssd_loss(t["box_regression"], t["class_logits"], anchors, t["boxes"], t["labels"],
                                    t["counts"], ignore)
        opt.zero_grad()
        deltas, logits, feats = heads_with_stats(model, t["images"])
        cls, box, n_pos, _ = ssd_loss(deltas, logits, anchors, t["boxes"], t["labels"], t["counts"], ignore)
        (cls + box).backward()
        gn = grad_norm(model)
        opt.step()
        cls, box = cls.detach(), box.detach()
        row = {"step": step, "lr": lr,
               "engine": {k: float(meta[k]) for k in ("loss", "loss_cls", "loss_box", "grad_norm", "max_abs_logit")},
               "twin": {"loss": float(cls + box), "loss_cls": float(cls), "loss_box": float(box), "positives": n_pos,
                        "grad_norm": gn, "max_abs_logit": float(logits.detach().abs().max())},
               "features": feats,
               "fwd_diff": float((logits.detach() - t["class_logits"]).abs().max()),
               "loss_on_ours": float(c0 + b0), "loss_on_ours_cls": float(c0), "loss_on_ours_box": float(b0)}
        prev = os.path.join(args.dump, f"weights_{step - 1:05d}.safetensors")
        if args.init == "dump" and not args.no_replay and os.path.exists(prev):
            # The same step from the engine's own weights before it: the forward pass, loss and
            # gradient norm along the engine's trajectory (no accumulated divergence).
            load_engine_weights(ref, prev)
            ref.zero_grad()
            rd, rl, rfeats = heads_with_stats(ref, t["images"])
            rc, rb, _, _ = ssd_loss(rd, rl, anchors, t["boxes"], t["labels"], t["counts"], ignore)
            (rc + rb).backward()
            row["on_engine_weights"] = {"fwd_diff": float((rl.detach() - t["class_logits"]).abs().max()),
                                        "loss": float((rc + rb).detach()), "grad_norm": grad_norm(ref),
                                        "features": rfeats}
            nxt = os.path.join(args.dump, f"weights_{step:05d}.safetensors")
            if os.path.exists(nxt):
                # torch.optim.SGD's update from the engine's weights, with a momentum buffer
                # chained over the replayed steps, and BatchNorm's running statistics after
                # this forward, against the engine's weights after the step.
                row["on_engine_weights"].update(replay_update(ref, ref_opt, lr, engine_state(nxt)))
        if pert is not None:
            for g in popt.param_groups:
                g["lr"] = lr
            popt.zero_grad()
            pd, pl = pert.heads(t["images"])
            pc, pb, _, _ = ssd_loss(pd, pl, anchors, t["boxes"], t["labels"], t["counts"], ignore)
            (pc + pb).backward()
            popt.step()
            row["perturbed"] = {"self_diff": float((pl.detach() - logits.detach()).abs().max()),
                                "loss": float((pc + pb).detach()), "max_abs_logit": float(pl.detach().abs().max())}
        e, w = row["engine"], row["twin"]
        print(f"{step:5d}  {e['loss']:8.4f} {e['loss_cls']:7.4f} {e['loss_box']:7.4f} {e['max_abs_logit']:7.2f} "
              f"{e['grad_norm']:7.3f}  | {w['loss']:8.4f} {w['loss_cls']:7.4f} {w['loss_box']:7.4f} {n_pos:4d} "
              f"{w['max_abs_logit']:7.2f} {gn:7.3f}  | {row['fwd_diff']:8.2e} {row['loss_on_ours']:9.4f}"
              + (f"  | on engine weights: fwd_diff {row['on_engine_weights']['fwd_diff']:.2e} loss "
                 f"{row['on_engine_weights']['loss']:.4f} gnorm {row['on_engine_weights']['grad_norm']:.3f}"
                 + (f" update {row['on_engine_weights']['update_rel']:.2e} running {row['on_engine_weights']['running_rel']:.2e}"
                    if "update_rel" in row["on_engine_weights"] else "")
                 if "on_engine_weights" in row else "")
              + (f"  | perturbed twin: logit diff {row['perturbed']['self_diff']:.2e}" if pert is not None else ""),
              flush=True)
        rows.append(row)
        if log:
            log.write(json.dumps(row) + "\n")
            log.flush()
        if args.init == "dump":
            for s in (1, steps[-1]):
                p = os.path.join(args.dump, f"weights_{s:05d}.safetensors")
                if step == s and os.path.exists(p):
                    compare_update(model, before, p, f"after step {s}")
    if log:
        log.close()
    summarise(rows)


if __name__ == "__main__":
    main()
