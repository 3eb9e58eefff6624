#include "common/report_pr.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "data/coco_json.h"
#include "data/dataset.h"

namespace app::report {

std::vector<PrCurve> voc_pr_curves(const std::vector<data::GroundTruth>& gt, const std::vector<data::Detection>& dets,
                                   const std::vector<int>& category_ids) {
  std::vector<PrCurve> out;
  for (int cat : category_ids) {
    PrCurve c;
    // This class's ground truth per image, and whether each is taken.
    std::map<std::string, std::vector<const data::GroundTruth*>> by_image;
    for (const data::GroundTruth& g : gt) {
      if (g.category != cat) continue;
      by_image[g.image].push_back(&g);
      if (!g.difficult && !g.iscrowd) ++c.num_gt;
    }
    std::map<const data::GroundTruth*, bool> taken;
    std::vector<const data::Detection*> mine;
    for (const data::Detection& d : dets)
      if (d.category == cat) mine.push_back(&d);
    std::stable_sort(mine.begin(), mine.end(), [](const data::Detection* a, const data::Detection* b) {
      return a->score > b->score;
    });
    int tp = 0, fp = 0;
    for (const data::Detection* d : mine) {
      const data::GroundTruth* best = nullptr;
      double ovmax = -INFINITY;
      const auto it = by_image.find(d->image);
      if (it != by_image.end()) {
        for (const data::GroundTruth* g : it->second) {
          const double o = data::voc_iou(d->box, g->box);
          if (o > ovmax) {  // first on ties
            ovmax = o;
            best = g;
          }
        }
      }
      if (best && ovmax >= 0.5) {
        if (best->difficult || best->iscrowd) continue;  // don't care
        if (!taken[best]) {
          taken[best] = true;
          ++tp;
        } else {
          ++fp;
        }
      } else {
        ++fp;
      }
      c.recall.push_back(c.num_gt > 0 ? static_cast<double>(tp) / c.num_gt : 0.0);
      c.precision.push_back(static_cast<double>(tp) / (tp + fp));
    }
    out.push_back(std::move(c));
  }
  return out;
}

PrCurve pr_envelope(const PrCurve& raw, int steps) {
  PrCurve e;
  e.num_gt = raw.num_gt;
  if (raw.recall.empty() || steps < 1) return e;
  // Right-to-left running maximum of the precision: envelope[i] = max precision at j >= i.
  std::vector<double> env(raw.precision);
  for (size_t i = env.size() - 1; i-- > 0;) env[i] = std::max(env[i], env[i + 1]);
  const double top = *std::max_element(raw.recall.begin(), raw.recall.end());
  size_t j = 0;
  for (int k = 0; k <= steps; ++k) {
    const double r = static_cast<double>(k) / steps;
    if (r > top + 1e-12) break;
    while (j < raw.recall.size() && raw.recall[j] < r - 1e-12) ++j;  // the first point reaching r
    if (j == raw.recall.size()) break;
    e.recall.push_back(r);
    e.precision.push_back(env[j]);
  }
  if (e.recall.empty() || e.recall.back() < top - 1e-12) {  // end at the highest recall itself
    const size_t last = static_cast<size_t>(std::max_element(raw.recall.begin(), raw.recall.end()) - raw.recall.begin());
    e.recall.push_back(top);
    e.precision.push_back(env[last]);
  }
  return e;
}

nlohmann::json per_class_summary(const EvalRun& run, const data::Dataset& dataset) {
  std::map<std::string, std::string> key_of;  // the records name images by path
  for (const data::Sample& s : dataset.samples) key_of[s.image_path] = s.key;
  std::vector<data::Detection> dets;
  for (const data::ImageDetections& im : run.images) {
    const auto k = key_of.find(im.file);
    const std::string key = k != key_of.end() ? k->second : data::image_key(im.file);
    for (const data::DetectionRecord& r : im.detections) dets.push_back({key, r.box, r.category_id, r.score});
  }
  const std::vector<PrCurve> curves = voc_pr_curves(data::ground_truth(dataset), dets, dataset.category_ids);
  nlohmann::json out = nlohmann::json::array();
  for (size_t c = 0; c < dataset.class_names.size() && c < curves.size(); ++c) {
    const PrCurve e = pr_envelope(curves[c]);
    nlohmann::json pr = nlohmann::json::array();
    for (size_t i = 0; i < e.recall.size(); ++i)  // 4 decimals: enough for a plot, short lines
      pr.push_back({std::round(e.recall[i] * 1e4) / 1e4, std::round(e.precision[i] * 1e4) / 1e4});
    const data::ClassResult* k = c < run.result.per_class.size() ? &run.result.per_class[c] : nullptr;
    out.push_back({{"name", dataset.class_names[c]},
                   {"num_gt", curves[c].num_gt},
                   {"ap_voc07", k ? k->ap_voc07 : -1.0},
                   {"ap_coco", k ? k->ap_coco : -1.0},
                   {"pr", pr}});
  }
  return out;
}

}  // namespace app::report
