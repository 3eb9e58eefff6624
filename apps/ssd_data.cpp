// ssd_data: dataset tools.
//   ssd_data anchors --data D [--split S] [--classes F] [--images DIR] --arch A [--input-size N]
//                    [--k K] [--seed S] [--anchor-preset P] [--anchor-sizes LIST]
// prints how well A's anchors fit D's training boxes (models/anchor_fit.h), proposes anchor
// scales by k-means on the box shapes (1 - IoU distance) and prints the fit they give.
//   ssd_data synth --out DIR [--format voc|coco] [--n N] [--val M] [--seed S] [--size WxH]
//                  [--classes K] [--split NAME] [--preset default|awkward] [--min-size F] [--max-size F]
// writes a synthetic shapes detection dataset (docs/synthetic-data.md) and prints one line:
//   wrote voc dataset to DIR: trainval 200 images, test 50 images; objects: circle 81, ...
// Exit codes: 0 ok; 1 bad arguments or an error while writing (one line on stderr).
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "common/anchor_report.h"
#include "common/cli_rules.h"
#include "common/config_check.h"
#include "data/synth.h"
#include "data/synth_awkward.h"
#include "data/dataset.h"
#include "engine/error.h"
#include "models/anchor_fit.h"
#include "models/anchor_scales.h"
#include "models/detection_model.h"

namespace {

struct SynthArgs {
  std::string out;
  std::string format = "voc";
  int n = 200;
  int val = 0;
  uint64_t seed = 0;
  std::string size = "320x240";
  int classes = 6;
  std::string split = "trainval";
  std::string preset = "default";
  double min_size = data::SynthOptions().min_size, max_size = data::SynthOptions().max_size;
};

void add_synth_options(CLI::App& synth, SynthArgs& a) {
  synth.add_option("--out", a.out, "output directory (created if missing)")->required();
  synth.add_option("--format", a.format, "disk layout")->check(CLI::IsMember({"voc", "coco"}))->capture_default_str();
  synth.add_option("--n", a.n, "images in the main split")->capture_default_str();
  synth.add_option("--val", a.val, "extra held-out images, split 'test'")->capture_default_str();
  synth.add_option("--seed", a.seed, "dataset seed")->capture_default_str();
  synth.add_option("--size", a.size, "image size WxH")->capture_default_str();
  synth.add_option("--classes", a.classes, "number of shape classes (1..10)")->capture_default_str();
  synth.add_option("--split", a.split, "name of the main split")->capture_default_str();
  synth.add_option("--preset", a.preset,
                   "default, or awkward: small faint objects and planted annotation faults (VOC only)")
      ->check(CLI::IsMember({"default", "awkward"}))
      ->capture_default_str();
  synth.add_option("--min-size", a.min_size, "smallest object side, a fraction of the shorter image side (default preset)")
      ->capture_default_str();
  synth.add_option("--max-size", a.max_size, "largest object side, a fraction of the shorter image side (default preset)")
      ->capture_default_str();
}

std::string summary_line(const std::string& out, const std::string& format, const data::SynthSummary& s) {
  std::ostringstream line;
  line << "wrote " << format << " dataset to " << out << ":";
  for (size_t i = 0; i < s.splits.size(); ++i)
    line << (i ? ", " : " ") << s.splits[i] << " " << s.images_per_split[i] << " images";
  line << "; objects:";
  for (size_t k = 0; k < s.class_names.size(); ++k)
    line << (k ? ", " : " ") << s.class_names[k] << " " << s.objects_per_class[k];
  return line.str();
}

int run_synth(const SynthArgs& a) {
  data::SynthOptions options;
  try {
    data::parse_synth_size(a.size, options);
  } catch (const std::exception& e) {
    throw eng::Error("--size: " + std::string(e.what()));
  }
  options.num_classes = a.classes;
  options.min_size = a.min_size;
  options.max_size = a.max_size;
  const data::SynthFormat format = a.format == "coco" ? data::SynthFormat::Coco : data::SynthFormat::Voc;
  if (a.preset == "awkward") {
    ENGINE_CHECK(format == data::SynthFormat::Voc, "--preset awkward writes the VOC layout only (got --format ",
                 a.format, ")");
    const data::SynthSummary summary = data::write_awkward_voc_dataset(a.out, a.n, a.val, a.seed, options.width,
                                                                       options.height, a.classes, a.split);
    std::cout << summary_line(a.out, a.format, summary) << "\n";
    return 0;
  }
  const data::SynthSummary summary = data::write_synth_dataset(a.out, format, a.n, a.val, a.seed, options, a.split);
  std::cout << summary_line(a.out, a.format, summary) << "\n";
  return 0;
}

struct AnchorArgs {
  std::string data, split = "trainval", classes, images, arch, preset, sizes;
  int input_size = 0;
  int k = 0;
  uint64_t seed = 0;
};

void add_anchor_options(CLI::App& a, AnchorArgs& x) {
  a.add_option("--data", x.data, "VOC root(s), comma-separated, or a COCO instances .json")->required();
  a.add_option("--split", x.split, "VOC split of --data")->capture_default_str();
  a.add_option("--classes", x.classes, "class names file (VOC layouts)");
  a.add_option("--images", x.images, "COCO: image folder of --data");
  a.add_option("--arch", x.arch, "architecture whose anchors are measured")->required()->check(
      CLI::IsMember(models::model_names()));
  a.add_option("--input-size", x.input_size, "input side (default: the architecture's)");
  a.add_option("--k", x.k, "k-means clusters (default: the architecture's scale count)");
  a.add_option("--seed", x.seed, "k-means++ seed")->capture_default_str();
  a.add_option("--anchor-preset", x.preset, "anchors to measure: voc, coco or custom (default: by --data)");
  a.add_option("--anchor-sizes", x.sizes, "custom anchor scales to measure (as ssd_train --anchor-sizes)");
}

std::vector<app::NumberRule> anchor_rules() {
  return {app::input_size_rule("--input-size", "", true), app::int_rule("--k", 0, 64), app::uint_rule("--seed")};
}

int run_anchors(const AnchorArgs& a) {
  app::check_value(app::input_size_rule("--input-size", a.arch, true), a.input_size);
  models::ModelConfig mc;
  mc.arch = a.arch;
  mc.num_classes = 2;  // the heads do not matter here
  mc.input_size = a.input_size;
  const bool coco = data::is_coco_path(a.data);
  app::apply_anchor_flags(mc, a.preset, a.sizes, coco ? "coco" : "voc");
  const int64_t count = models::anchor_scale_count(a.arch);
  const data::Dataset d = data::load_dataset(a.data, a.split, coco ? "" : a.classes, a.images, false);
  for (size_t i = 0; i < d.warnings.size() && i < 5; ++i) std::cerr << "ssd_data: warning: " << d.warnings[i] << "\n";
  if (d.warnings.size() > 5) std::cerr << "ssd_data: warning: ... and " << d.warnings.size() - 5 << " more\n";
  auto model = models::create_model(mc);
  std::cout << "data: " << data::dataset_source(a.data, a.split, coco ? "" : a.classes, a.images) << "\n";
  for (const std::string& line : app::anchor_fit_lines(d, *model, a.data)) std::cout << line << "\n";

  const int s = static_cast<int>(model->config().input_size);
  const models::TrainingBoxes tb = models::fit_boxes(d, s, model->keep_aspect_ratio(), model->aspect_limits());
  ENGINE_CHECK(!tb.boxes.empty(), a.data, ": no training box to cluster");
  if (count == 0) {
    std::cout << "anchors: " << a.arch << " takes no custom anchor sizes (tiny_ssd, ssd300_vgg16, ssd512_vgg16 and the GluonCV presets do)\n";
    return 0;
  }
  models::ModelConfig pc = mc;
  pc.input_size = s;
  const models::AnchorProposal p = models::propose_anchor_scales(tb.boxes, pc, a.k, a.seed);
  std::ostringstream cl;
  cl.precision(3);
  for (size_t i = 0; i < p.clusters.size(); ++i) cl << (i ? ", " : "") << p.clusters[i].w << "x" << p.clusters[i].h;
  std::printf("k-means (k %zu, distance 1 - IoU, seed %llu) on %zu box shapes at input %d: mean best IoU %.3f; "
              "clusters (w x h px): %s\n",
              p.clusters.size(), static_cast<unsigned long long>(a.seed), tb.boxes.size(), s, p.cluster_iou,
              cl.str().c_str());
  std::fflush(stdout);
  std::cout << "k-means scales: " << models::format_anchor_scales(p.kmeans_scales, 4)
            << "; refined on the model's anchor grid from the " << p.start
            << " start: " << models::format_anchor_scales(p.scales, 4) << "\n";
  std::cout << "anchors: " << a.arch << " (proposed) at input " << s
            << " on the training set: " << models::describe_anchor_fit(p.fit) << "\n";
  std::cout << "proposed: --anchor-sizes " << models::format_anchor_scales(p.scales, 4);
  if (a.input_size > 0) std::cout << " --input-size " << a.input_size;
  std::cout << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ssd_data: detection dataset tools"};
  app.require_subcommand(1);
  SynthArgs args;
  CLI::App* synth = app.add_subcommand("synth", "write a synthetic shapes detection dataset (VOC or COCO layout)");
  add_synth_options(*synth, args);
  std::vector<app::NumberRule> synth_rules = app::synth_rules();
  synth_rules.push_back(app::real_rule("--min-size", 0, 0.9, /*lo_open=*/true));
  synth_rules.push_back(app::real_rule("--max-size", 0, 0.9, /*lo_open=*/true));
  app::apply_rules(*synth, synth_rules);  // every number checked on its text (common/config_check.h)
  AnchorArgs anchor_args;
  CLI::App* anchors = app.add_subcommand("anchors", "anchor fit on a dataset's boxes and k-means anchor sizes");
  add_anchor_options(*anchors, anchor_args);
  app::apply_rules(*anchors, anchor_rules());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "ssd_data: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  try {
    if (synth->parsed()) return run_synth(args);
    if (anchors->parsed()) return run_anchors(anchor_args);
  } catch (const std::exception& e) {
    std::cerr << "ssd_data: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  return 1;
}
