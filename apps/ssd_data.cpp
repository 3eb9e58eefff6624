// ssd_data: dataset tools. One subcommand so far:
//   ssd_data synth --out DIR [--format voc|coco] [--n N] [--val M] [--seed S] [--size WxH]
//                  [--classes K] [--split NAME] [--preset default|awkward]
// writes a synthetic shapes detection dataset (docs/synthetic-data.md) and prints one line:
//   wrote voc dataset to DIR: trainval 200 images, test 50 images; objects: circle 81, ...
// Exit codes: 0 ok; 1 bad arguments or an error while writing (one line on stderr).
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli_rules.h"
#include "common/config_check.h"
#include "data/synth.h"
#include "data/synth_awkward.h"
#include "engine/error.h"

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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ssd_data: detection dataset tools"};
  app.require_subcommand(1);
  SynthArgs args;
  CLI::App* synth = app.add_subcommand("synth", "write a synthetic shapes detection dataset (VOC or COCO layout)");
  add_synth_options(*synth, args);
  app::apply_rules(*synth, app::synth_rules());  // every number checked on its text (common/config_check.h)
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "ssd_data: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  try {
    if (synth->parsed()) return run_synth(args);
  } catch (const std::exception& e) {
    std::cerr << "ssd_data: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  return 1;
}
