// ssd_eval: evaluate detections against a VOC or COCO ground truth.
//   ssd_eval --gt PATH [--split NAME] [--classes FILE] [--images DIR] --det FILE [--json]
// --gt: a VOC root (several comma-separated) read with --split (default "test"), or a COCO
// instances JSON. Image files are not needed. Detections are matched to the ground truth by
// image file base name; a category_id that is not one of the dataset's is an error, a
// detection on an image the dataset does not have is ignored (with a warning).
// --det is the project's detections.json or a COCO results list (data/coco_results.h, told
// apart by content: a top-level list), whose image ids map to file names through the ids
// file beside it (data::coco_ids_path, written by ssd_detect without --coco-gt) when there
// is one, else through a COCO --gt's "images".
// Output: a per-class table and the summary metrics, or with --json one JSON object
// (data::to_json). Reader warnings go to stderr, one line each, then a count line.
// Exit codes: 0 ok, 1 bad arguments or unreadable / malformed input ("ssd_eval: <message>").
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config_check.h"
#include "data/coco_json.h"
#include "data/coco_results.h"
#include "data/dataset.h"
#include "data/metrics.h"
#include "engine/cpu_threads.h"
#include "engine/error.h"

namespace {

struct Args {
  std::string gt, split = "test", classes, images, det;
  bool json = false;
};

void report_warnings(const data::Dataset& d) {
  if (d.warnings.empty()) return;
  for (const std::string& w : d.warnings) std::cerr << "ssd_eval: warning: " << w << "\n";
  std::cerr << "ssd_eval: " << d.warnings.size() << " warnings: " << d.skipped_images << " images and "
            << d.skipped_objects << " objects skipped\n";
}

std::string id_list(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < 20; ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return ids.size() > 20 ? s + ", ..." : s;
}

// Checks the categories and drops (with one warning) detections on images not in the dataset.
std::vector<data::Detection> match_detections(std::vector<data::Detection> dets, const data::Dataset& d,
                                              const std::string& det_path) {
  const std::set<int> categories(d.category_ids.begin(), d.category_ids.end());
  std::set<std::string> keys;
  for (const data::Sample& s : d.samples) keys.insert(s.key);
  std::set<std::string> unknown_images;
  std::vector<data::Detection> kept;
  for (const data::Detection& det : dets) {
    ENGINE_CHECK(categories.count(det.category), det_path, ": category_id ", det.category, " (image ", det.image,
                 ") is not a category of the ground truth (", id_list(d.category_ids), ")");
    if (keys.count(det.image)) {
      kept.push_back(det);
    } else {
      unknown_images.insert(det.image);
    }
  }
  if (!unknown_images.empty())
    std::cerr << "ssd_eval: warning: " << det_path << ": " << dets.size() - kept.size() << " detections on "
              << unknown_images.size() << " images not in the ground truth (ignored), e.g. "
              << *unknown_images.begin() << "\n";
  return kept;
}

std::string ap_text(double ap) {
  if (ap < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", ap);
  return buf;
}

void print_table(const data::EvalResult& r, const data::Dataset& d, size_t num_dets) {
  size_t width = 5;
  for (const std::string& n : d.class_names) width = std::max(width, n.size());
  const int w = static_cast<int>(width);
  std::printf("images: %zu, detections: %zu\n\n", d.samples.size(), num_dets);
  std::printf("%-*s %7s %9s %12s %8s\n", w, "class", "GT", "AP VOC07", "AP VOC area", "AP COCO");
  for (size_t c = 0; c < r.per_class.size() && c < d.class_names.size(); ++c) {
    const data::ClassResult& k = r.per_class[c];
    std::printf("%-*s %7d %9s %12s %8s\n", w, d.class_names[c].c_str(), k.num_gt, ap_text(k.ap_voc07).c_str(),
                ap_text(k.ap_voc_area).c_str(), ap_text(k.ap_coco).c_str());
  }
  std::printf("\nmAP VOC07 (11-point):   %s\n", ap_text(r.map_voc07).c_str());
  std::printf("mAP VOC area:           %s\n", ap_text(r.map_voc_area).c_str());
  std::printf("COCO AP@[.5:.95]:       %s\n", ap_text(r.map_coco).c_str());
  std::printf("COCO AP50:              %s\n", ap_text(r.ap50).c_str());
  std::printf("COCO AP75:              %s\n", ap_text(r.ap75).c_str());
  std::printf("COCO APs / APm / APl:   %s / %s / %s\n", ap_text(r.aps).c_str(), ap_text(r.apm).c_str(),
              ap_text(r.apl).c_str());
}

// A COCO results list: image ids -> file names through the ids file beside it, else the
// COCO ground truth's "images"; results on ids neither has are left out with one warning.
std::vector<data::Detection> read_coco_results(const Args& a) {
  const std::vector<data::CocoResult> results = data::read_coco_results(a.det);
  const std::string ids_file = data::coco_ids_path(a.det);
  std::error_code ec;
  std::string source;
  if (std::filesystem::exists(ids_file, ec)) {
    source = ids_file;
  } else {
    ENGINE_CHECK(data::is_coco_path(a.gt), a.det, ": a COCO results file needs its image ids: no ", ids_file,
                 " beside it, and --gt ", a.gt, " is not a COCO instances file");
    source = a.gt;
  }
  std::vector<int64_t> unknown;
  std::vector<data::Detection> dets =
      data::coco_results_to_detections(results, data::read_coco_image_ids(source), unknown);
  if (!unknown.empty())
    std::cerr << "ssd_eval: warning: " << a.det << ": " << results.size() - dets.size() << " detections on "
              << unknown.size() << " image ids that " << source << " does not have (ignored), e.g. " << unknown[0]
              << "\n";
  return dets;
}

int run(const Args& a) {
  const data::Dataset d = data::load_dataset(a.gt, a.split, a.classes, a.images, /*require_images=*/false);
  report_warnings(d);
  const auto dets = match_detections(
      data::is_coco_results_file(a.det) ? read_coco_results(a) : data::read_detections(a.det), d, a.det);
  const data::EvalResult r = data::evaluate(data::ground_truth(d), dets, d.category_ids);
  if (a.json) {
    std::cout << data::to_json(r) << "\n";
  } else {
    print_table(r, d, dets.size());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads and their waiting, OpenBLAS single-threaded (engine/cpu_threads.h).
  if (!eng::init_cpu_threads(argc, argv, "ssd_eval")) return 1;
  CLI::App app{"ssd_eval: evaluate detections (VOC07 / VOC area AP, COCO AP) against VOC or COCO ground truth"};
  Args a;
  app.add_option("--gt", a.gt, "VOC root(s), comma-separated, or a COCO instances .json")->required();
  app.add_option("--split", a.split, "VOC split: ImageSets/Main/<split>.txt (default test)");
  app.add_option("--classes", a.classes, "VOC class names file (default <root>/classes.txt or the 20 VOC classes)");
  app.add_option("--images", a.images, "COCO images folder (not needed for evaluation)");
  app.add_option("--det", a.det, "detections.json, or a COCO results list (ssd_detect --coco-results)")->required();
  app.add_flag("--json", a.json, "print one JSON object instead of the table");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "ssd_eval: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::cerr << "ssd_eval: " << app::one_line(e.what()) << "\n";
    return 1;
  }
}
