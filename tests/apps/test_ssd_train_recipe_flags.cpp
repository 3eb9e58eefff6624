// ssd_train --matcher and --crop-rule (issue 14 items 6 and 8), run as a program on a tiny
// generated dataset: the matcher lands in the checkpoint and survives --resume, the crop
// rule is accepted, and bad values are one line with exit 1.
#include <catch2/catch.hpp>

#include <string>

#include "app_runner.h"
#include "data/synth.h"
#include "models/weights.h"
#include "temp_dir.h"

namespace {

const std::string& data_root() {
  static test::TempDir dir("recipe_flags_data");
  static const bool written = [] {
    data::SynthOptions o;
    o.width = 96;
    o.height = 80;
    o.num_classes = 2;
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, 8, 2, 5, o);
    return true;
  }();
  (void)written;
  static const std::string root = dir.path.string();
  return root;
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

}  // namespace

TEST_CASE("ssd_train --matcher: stored in the checkpoint, kept on resume, bad values one line", "[apps][matcher]") {
  const std::string root = data_root();
  test::TempDir out("recipe_flags_train");
  const std::string common = "--arch tiny_ssd --data '" + root + "' --input-size 64 --iters 2 --batch 2 --workers 0 ";
  auto r = test::run_app("ssd_train", common + "--matcher bipartite --crop-rule every --out '" + (out / "a") + "'");
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(models::read_model_config(out / "a/last.safetensors").matcher == "bipartite");
  // Default: no matcher recorded (the architecture's, ssd for tiny_ssd).
  auto d = test::run_app("ssd_train", common + "--out '" + (out / "b") + "'");
  INFO(d.out << d.err);
  REQUIRE(d.status == 0);
  CHECK(models::read_model_config(out / "b/last.safetensors").matcher.empty());
  // Resume keeps the checkpoint's matcher; naming another one is refused.
  const std::string resume = "--data '" + root + "' --iters 3 --batch 2 --workers 0 --resume '" +
                             (out / "a/last.safetensors") + "' --out '" + (out / "a") + "'";
  auto res = test::run_app("ssd_train", resume);
  INFO(res.out << res.err);
  CHECK(res.status == 0);
  CHECK(models::read_model_config(out / "a/last.safetensors").matcher == "bipartite");
  auto res2 = test::run_app("ssd_train", resume + " --matcher ssd");
  CHECK(res2.status == 1);
  CHECK(one_line(res2.err));
  CHECK(res2.err.find("--matcher: not with --resume") != std::string::npos);

  for (const std::string& bad : {"--matcher hungarian", "--crop-rule all"}) {
    INFO(bad);
    auto b = test::run_app("ssd_train", common + bad + " --out '" + (out / "c") + "'");
    CHECK(b.status == 1);
    CHECK(one_line(b.err));
    CHECK(b.err.find(bad.substr(0, bad.find(' '))) != std::string::npos);
  }
  auto retina = test::run_app("ssd_train", "--arch retinanet_resnet50_fpn --data '" + root +
                                               "' --iters 1 --batch 2 --workers 0 --matcher bipartite --out '" +
                                               (out / "d") + "'");
  CHECK(retina.status == 1);
  CHECK(one_line(retina.err));
  CHECK(retina.err.find("has its own matcher") != std::string::npos);
}
