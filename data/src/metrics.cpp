// Detection metrics: VOC (devkit) and COCO (pycocotools algorithm). See data/metrics.h.
#include "data/metrics.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>

namespace data {

double voc_iou(const Box& d, const Box& g) {
  const double iw = std::min(d.x2, g.x2) - std::max(d.x1, g.x1) + 1.0;
  const double ih = std::min(d.y2, g.y2) - std::max(d.y1, g.y1) + 1.0;
  if (!(iw > 0 && ih > 0)) return 0.0;
  const double inter = iw * ih;
  const double uni = (d.x2 - d.x1 + 1.0) * (d.y2 - d.y1 + 1.0) + (g.x2 - g.x1 + 1.0) * (g.y2 - g.y1 + 1.0) - inter;
  return inter / uni;
}

double coco_iou(const Box& d, const Box& g, bool crowd) {
  // Same arithmetic as on [x, y, w, h] boxes: right edge = x + w.
  const double dw = d.x2 - d.x1, dh = d.y2 - d.y1, gw = g.x2 - g.x1, gh = g.y2 - g.y1;
  const double iw = std::min(d.x1 + dw, g.x1 + gw) - std::max(d.x1, g.x1);
  if (iw <= 0) return 0.0;
  const double ih = std::min(d.y1 + dh, g.y1 + gh) - std::max(d.y1, g.y1);
  if (ih <= 0) return 0.0;
  const double inter = iw * ih;
  const double uni = crowd ? dw * dh : dw * dh + gw * gh - inter;
  return inter / uni;
}

double voc07_ap(const std::vector<double>& rec, const std::vector<double>& prec) {
  double ap = 0;
  for (int k = 0; k <= 10; ++k) {
    const double t = k / 10.0;
    double p = 0;
    for (size_t i = 0; i < rec.size(); ++i)
      if (rec[i] >= t) p = std::max(p, prec[i]);
    ap += p / 11.0;
  }
  return ap;
}

double voc_area_ap(const std::vector<double>& rec, const std::vector<double>& prec) {
  std::vector<double> mrec{0.0}, mpre{0.0};
  mrec.insert(mrec.end(), rec.begin(), rec.end());
  mpre.insert(mpre.end(), prec.begin(), prec.end());
  mrec.push_back(1.0);
  mpre.push_back(0.0);
  for (size_t i = mpre.size() - 1; i > 0; --i) mpre[i - 1] = std::max(mpre[i - 1], mpre[i]);
  double ap = 0;
  for (size_t i = 1; i < mrec.size(); ++i)
    if (mrec[i] != mrec[i - 1]) ap += (mrec[i] - mrec[i - 1]) * mpre[i];
  return ap;
}

namespace {

// Stable sort of indices by score, descending.
template <typename Score>
std::vector<size_t> order_by_score(size_t n, Score score) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return score(a) > score(b); });
  return idx;
}

// ---- VOC, one class ----
void eval_voc_class(const std::vector<const GroundTruth*>& gts, const std::vector<const Detection*>& dets,
                    ClassResult& out) {
  std::map<std::string, std::vector<const GroundTruth*>> by_image;
  std::map<const GroundTruth*, bool> matched;
  int npos = 0;
  for (const GroundTruth* g : gts) {
    by_image[g->image].push_back(g);
    if (!(g->difficult || g->iscrowd)) ++npos;
  }
  out.num_gt = npos;
  if (npos == 0) return;
  std::vector<size_t> order = order_by_score(dets.size(), [&](size_t i) { return dets[i]->score; });
  std::vector<double> tp, fp;
  double ctp = 0, cfp = 0;
  for (size_t oi : order) {
    const Detection* d = dets[oi];
    double ovmax = -std::numeric_limits<double>::infinity();
    const GroundTruth* best = nullptr;
    auto it = by_image.find(d->image);
    if (it != by_image.end())
      for (const GroundTruth* g : it->second) {
        const double ov = voc_iou(d->box, g->box);
        if (ov > ovmax) {
          ovmax = ov;
          best = g;
        }
      }
    if (best && ovmax >= 0.5) {
      if (best->difficult || best->iscrowd) continue;  // don't care
      bool& m = matched[best];
      if (!m) {
        m = true;
        ctp += 1;
      } else {
        cfp += 1;
      }
    } else {
      cfp += 1;
    }
    tp.push_back(ctp);
    fp.push_back(cfp);
  }
  std::vector<double> rec(tp.size()), prec(tp.size());
  for (size_t i = 0; i < tp.size(); ++i) {
    rec[i] = tp[i] / npos;
    prec[i] = tp[i] / std::max(tp[i] + fp[i], std::numeric_limits<double>::epsilon());
  }
  out.ap_voc07 = voc07_ap(rec, prec);
  out.ap_voc_area = voc_area_ap(rec, prec);
}

// ---- COCO ----
constexpr int kT = 10, kR = 101, kMaxDets = 100, kAreas = 4;

struct ImgEval {
  std::vector<double> scores;            // detections (score order, <= maxDets)
  std::vector<std::vector<char>> matched;  // [t][d]
  std::vector<std::vector<char>> ignored;  // [t][d]
  int num_gt_not_ignored = 0;
};

ImgEval eval_coco_image(const std::vector<const GroundTruth*>& gts_in, const std::vector<const Detection*>& dets_in,
                        double a_lo, double a_hi, const double* iou_thr) {
  ImgEval e;
  // GT: ignore flags, non-ignored first (stable).
  const size_t G = gts_in.size();
  std::vector<char> g_ign_raw(G);
  for (size_t j = 0; j < G; ++j) {
    const GroundTruth* g = gts_in[j];
    const double area = g->area > 0 ? g->area : (g->box.x2 - g->box.x1) * (g->box.y2 - g->box.y1);
    g_ign_raw[j] = g->iscrowd || area < a_lo || area > a_hi;
  }
  std::vector<size_t> gord(G);
  std::iota(gord.begin(), gord.end(), size_t{0});
  std::stable_sort(gord.begin(), gord.end(), [&](size_t a, size_t b) { return g_ign_raw[a] < g_ign_raw[b]; });
  std::vector<const GroundTruth*> gts(G);
  std::vector<char> g_ign(G);
  for (size_t j = 0; j < G; ++j) {
    gts[j] = gts_in[gord[j]];
    g_ign[j] = g_ign_raw[gord[j]];
    if (!g_ign[j]) ++e.num_gt_not_ignored;
  }
  // Detections: score order, first maxDets.
  std::vector<size_t> dord = order_by_score(dets_in.size(), [&](size_t i) { return dets_in[i]->score; });
  if (dord.size() > static_cast<size_t>(kMaxDets)) dord.resize(kMaxDets);
  const size_t D = dord.size();
  std::vector<const Detection*> dets(D);
  for (size_t i = 0; i < D; ++i) dets[i] = dets_in[dord[i]];
  std::vector<double> ious(D * G);
  for (size_t i = 0; i < D; ++i)
    for (size_t j = 0; j < G; ++j) ious[i * G + j] = coco_iou(dets[i]->box, gts[j]->box, gts[j]->iscrowd);
  e.scores.resize(D);
  for (size_t i = 0; i < D; ++i) e.scores[i] = dets[i]->score;
  e.matched.assign(kT, std::vector<char>(D, 0));
  e.ignored.assign(kT, std::vector<char>(D, 0));
  for (int t = 0; t < kT; ++t) {
    std::vector<char> gt_taken(G, 0);
    for (size_t i = 0; i < D; ++i) {
      double best = std::min(iou_thr[t], 1 - 1e-10);
      long m = -1;
      for (size_t j = 0; j < G; ++j) {
        if (gt_taken[j] && !gts[j]->iscrowd) continue;
        if (m > -1 && !g_ign[m] && g_ign[j]) break;  // non-ignored GT come first
        if (ious[i * G + j] < best) continue;
        best = ious[i * G + j];
        m = static_cast<long>(j);
      }
      if (m == -1) continue;
      e.ignored[t][i] = g_ign[m];
      e.matched[t][i] = 1;
      gt_taken[m] = 1;
    }
    for (size_t i = 0; i < D; ++i) {
      if (e.matched[t][i]) continue;
      const Box& b = dets[i]->box;
      const double area = (b.x2 - b.x1) * (b.y2 - b.y1);
      if (area < a_lo || area > a_hi) e.ignored[t][i] = 1;
    }
  }
  return e;
}

// precision[t][r] for one category and area range; returns false when no non-ignored GT.
bool accumulate(const std::vector<ImgEval>& evals, std::vector<std::vector<double>>& precision,
                const double* rec_thr) {
  int npig = 0;
  std::vector<double> scores;
  std::vector<std::pair<size_t, size_t>> where;  // (image, det)
  for (size_t k = 0; k < evals.size(); ++k) {
    npig += evals[k].num_gt_not_ignored;
    for (size_t i = 0; i < evals[k].scores.size(); ++i) {
      scores.push_back(evals[k].scores[i]);
      where.emplace_back(k, i);
    }
  }
  if (npig == 0) return false;
  std::vector<size_t> ord = order_by_score(scores.size(), [&](size_t i) { return scores[i]; });
  const size_t nd = ord.size();
  const double eps = std::nextafter(1.0, 2.0) - 1.0;  // np.spacing(1)
  precision.assign(kT, std::vector<double>(kR, 0.0));
  for (int t = 0; t < kT; ++t) {
    std::vector<double> rc(nd), pr(nd);
    double tp = 0, fp = 0;
    for (size_t n = 0; n < nd; ++n) {
      const auto [k, i] = where[ord[n]];
      if (!evals[k].ignored[t][i]) {
        if (evals[k].matched[t][i]) tp += 1;
        else fp += 1;
      }
      rc[n] = tp / npig;
      pr[n] = tp / (fp + tp + eps);
    }
    for (size_t n = nd; n-- > 1;)
      if (pr[n] > pr[n - 1]) pr[n - 1] = pr[n];
    for (int r = 0; r < kR; ++r) {
      const size_t pos = std::lower_bound(rc.begin(), rc.end(), rec_thr[r]) - rc.begin();
      if (pos >= nd) break;  // this and all higher recall points stay 0
      precision[t][r] = pr[pos];
    }
  }
  return true;
}

double mean_valid(const std::vector<double>& v) {
  double s = 0;
  int n = 0;
  for (double x : v)
    if (x > -1) {
      s += x;
      ++n;
    }
  return n ? s / n : -1.0;
}

}  // namespace

EvalResult evaluate(const std::vector<GroundTruth>& gt, const std::vector<Detection>& dets,
                    const std::vector<int>& category_ids) {
  EvalResult res;
  // Thresholds computed as numpy.linspace does.
  double iou_thr[kT], rec_thr[kR];
  {
    const double step = (0.95 - 0.5) / (kT - 1);
    for (int t = 0; t < kT; ++t) iou_thr[t] = t * step + 0.5;
    iou_thr[kT - 1] = 0.95;
    const double rstep = 1.0 / (kR - 1);
    for (int r = 0; r < kR; ++r) rec_thr[r] = r * rstep + 0.0;
    rec_thr[kR - 1] = 1.0;
  }
  const double area_lo[kAreas] = {0.0, 0.0, 32.0 * 32.0, 96.0 * 96.0};
  const double area_hi[kAreas] = {1e10, 32.0 * 32.0, 96.0 * 96.0, 1e10};

  std::map<int, size_t> cat_index;
  for (size_t c = 0; c < category_ids.size(); ++c) cat_index.emplace(category_ids[c], c);
  const size_t C = category_ids.size();
  // [category][image key] -> lists; std::map keeps image keys sorted.
  std::vector<std::map<std::string, std::pair<std::vector<const GroundTruth*>, std::vector<const Detection*>>>> groups(C);
  std::vector<std::vector<const GroundTruth*>> gt_by_cat(C);
  std::vector<std::vector<const Detection*>> det_by_cat(C);
  for (const GroundTruth& g : gt) {
    auto it = cat_index.find(g.category);
    if (it == cat_index.end()) continue;
    groups[it->second][g.image].first.push_back(&g);
    gt_by_cat[it->second].push_back(&g);
  }
  for (const Detection& d : dets) {
    auto it = cat_index.find(d.category);
    if (it == cat_index.end()) continue;
    groups[it->second][d.image].second.push_back(&d);
    det_by_cat[it->second].push_back(&d);
  }

  // coco[a][t] -> per-category mean precision over recall points (or -1).
  std::vector<std::vector<std::vector<double>>> ap_cat(kAreas, std::vector<std::vector<double>>(kT, std::vector<double>(C, -1.0)));
  res.per_class.resize(C);
  for (size_t c = 0; c < C; ++c) {
    ClassResult& cr = res.per_class[c];
    cr.category = category_ids[c];
    eval_voc_class(gt_by_cat[c], det_by_cat[c], cr);
    for (int a = 0; a < kAreas; ++a) {
      std::vector<ImgEval> evals;
      for (const auto& kv : groups[c]) evals.push_back(eval_coco_image(kv.second.first, kv.second.second, area_lo[a], area_hi[a], iou_thr));
      std::vector<std::vector<double>> precision;
      if (!accumulate(evals, precision, rec_thr)) continue;
      for (int t = 0; t < kT; ++t)
        ap_cat[a][t][c] = std::accumulate(precision[t].begin(), precision[t].end(), 0.0) / kR;
    }
    if (ap_cat[0][0][c] > -1) {
      double s = 0;
      for (int t = 0; t < kT; ++t) s += ap_cat[0][t][c];
      cr.ap_coco = s / kT;
    }
  }
  std::vector<double> v07, varea;
  for (const ClassResult& cr : res.per_class)
    if (cr.num_gt > 0) {
      v07.push_back(cr.ap_voc07);
      varea.push_back(cr.ap_voc_area);
    }
  res.map_voc07 = mean_valid(v07);
  res.map_voc_area = mean_valid(varea);
  auto over_t = [&](int a) {
    std::vector<double> v;
    for (int t = 0; t < kT; ++t) v.insert(v.end(), ap_cat[a][t].begin(), ap_cat[a][t].end());
    return mean_valid(v);
  };
  res.map_coco = over_t(0);
  res.ap50 = mean_valid(ap_cat[0][0]);
  res.ap75 = mean_valid(ap_cat[0][5]);
  res.aps = over_t(1);
  res.apm = over_t(2);
  res.apl = over_t(3);
  return res;
}

EvalResult evaluate(const std::vector<GroundTruth>& gt, const std::vector<Detection>& dets, int num_classes) {
  std::vector<int> ids(std::max(num_classes, 0));
  std::iota(ids.begin(), ids.end(), 0);
  return evaluate(gt, dets, ids);
}

std::string to_json(const EvalResult& r) {
  std::ostringstream os;
  os << std::setprecision(17);
  os << "{\"map_voc07\": " << r.map_voc07 << ", \"map_voc_area\": " << r.map_voc_area << ", \"map_coco\": " << r.map_coco
     << ", \"ap50\": " << r.ap50 << ", \"ap75\": " << r.ap75 << ", \"aps\": " << r.aps << ", \"apm\": " << r.apm
     << ", \"apl\": " << r.apl << ", \"per_class\": [";
  for (size_t i = 0; i < r.per_class.size(); ++i) {
    const ClassResult& c = r.per_class[i];
    os << (i ? ", " : "") << "{\"category\": " << c.category << ", \"num_gt\": " << c.num_gt
       << ", \"ap_voc07\": " << c.ap_voc07 << ", \"ap_voc_area\": " << c.ap_voc_area << ", \"ap_coco\": " << c.ap_coco << "}";
  }
  os << "]}";
  return os.str();
}

}  // namespace data
