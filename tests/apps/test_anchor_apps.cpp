// `ssd_data anchors` and the anchor fit ssd_train prints (issue 14 item 7), run as programs
// on a generated small-object dataset (objects 5-20% of the image side).
#include <catch2/catch.hpp>

#include <string>

#include "app_runner.h"
#include "data/synth.h"
#include "models/weights.h"
#include "temp_dir.h"

namespace {

const std::string& small_objects_root() {
  static test::TempDir dir("anchor_apps_data");
  static const bool written = [] {
    data::SynthOptions o;
    o.width = 160;
    o.height = 120;
    o.num_classes = 3;
    o.min_size = 0.05;
    o.max_size = 0.2;
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, 16, 4, 21, o);
    return true;
  }();
  (void)written;
  static const std::string root = dir.path.string();
  return root;
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

}  // namespace

TEST_CASE("ssd_data anchors prints the fit, warns on small objects and proposes sizes that fit better", "[anchor_fit][apps]") {
  const std::string root = small_objects_root();
  auto r = test::run_app("ssd_data", "anchors --data '" + root + "' --arch tiny_ssd --input-size 128");
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("anchors: tiny_ssd (voc) at input 128 on the training set:") != std::string::npos);
  CHECK(r.out.find("warning: the anchors fit the training boxes poorly") != std::string::npos);
  CHECK(r.out.find("k-means (k 6, distance 1 - IoU, seed 0)") != std::string::npos);
  CHECK(r.out.find("anchors: tiny_ssd (proposed) at input 128") != std::string::npos);
  const size_t at = r.out.find("proposed: --anchor-sizes ");
  REQUIRE(at != std::string::npos);
  std::string sizes = r.out.substr(at + 25);
  sizes = sizes.substr(0, sizes.find_first_of(" \n"));
  // Measuring the proposed sizes gives the figure printed for them, and (deterministic) the
  // same proposal again.
  auto again = test::run_app("ssd_data", "anchors --data '" + root + "' --arch tiny_ssd --input-size 128");
  CHECK(again.out == r.out);
  auto custom = test::run_app("ssd_data", "anchors --data '" + root + "' --arch tiny_ssd --input-size 128 --anchor-sizes " + sizes);
  INFO(custom.out << custom.err);
  REQUIRE(custom.status == 0);
  CHECK(custom.out.find("anchors: tiny_ssd (custom) at input 128") != std::string::npos);
}

TEST_CASE("ssd_data anchors: bad input is one line and exit 1", "[anchor_fit][apps]") {
  const std::string root = small_objects_root();
  for (const std::string& args :
       {std::string("--arch tiny_ssd --input-size 32"), std::string("--arch tiny_ssd --k 65"),
        std::string("--arch tiny_ssd --k -1"), std::string("--arch tiny_ssd --seed -1"),
        std::string("--arch tiny_ssd --anchor-sizes 0.1,nan"), std::string("--arch tiny_ssd --anchor-sizes 0.1,0.2"),
        std::string("--arch tiny_ssd --anchor-preset bogus"), std::string("--arch yolo"),
        std::string("--arch tiny_ssd --anchor-preset coco --anchor-sizes 0.1,0.2,0.3,0.4,0.5,0.6")}) {
    auto r = test::run_app("ssd_data", "anchors --data '" + root + "' " + args);
    INFO(args << " -> " << r.err);
    CHECK(r.status == 1);
    CHECK(one_line(r.err));
  }
  auto r = test::run_app("ssd_data", "anchors --data '" + root + "' --arch tiny_ssd --anchor-preset bogus");
  CHECK(r.err.find("not one of voc, coco, custom") != std::string::npos);
  auto missing = test::run_app("ssd_data", "anchors --data /nonexistent/voc --arch tiny_ssd");
  CHECK(missing.status == 1);
  CHECK(one_line(missing.err));
}

TEST_CASE("ssd_train prints the anchor fit, warns on small objects and stores custom sizes", "[anchor_fit][apps]") {
  const std::string root = small_objects_root();
  test::TempDir out("anchor_apps_train");
  const std::string common = "--arch tiny_ssd --data '" + root + "' --input-size 128 --iters 1 --batch 2 --workers 0 ";
  auto r = test::run_app("ssd_train", common + "--out '" + (out / "a") + "'");
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("anchors: tiny_ssd (voc) at input 128 on the training set:") != std::string::npos);
  CHECK(r.out.find("warning: the anchors fit the training boxes poorly") != std::string::npos);
  CHECK(r.out.find("ssd_data anchors --data " + root + " --arch tiny_ssd --input-size 128") != std::string::npos);

  const std::string sizes = "0.04,0.07,0.1,0.14,0.18,0.22";
  auto c = test::run_app("ssd_train", common + "--anchor-sizes " + sizes + " --out '" + (out / "b") + "'");
  INFO(c.out << c.err);
  REQUIRE(c.status == 0);
  CHECK(c.out.find("anchors: tiny_ssd (custom) at input 128") != std::string::npos);
  const models::ModelConfig mc = models::read_model_config(out / "b/last.safetensors");
  CHECK(mc.anchor_preset == "custom");
  CHECK(mc.anchor_scales == std::vector<double>{0.04, 0.07, 0.1, 0.14, 0.18, 0.22});
  // Resume takes the checkpoint's anchors; the flags are refused with it.
  auto res = test::run_app("ssd_train", "--data '" + root + "' --iters 2 --batch 2 --workers 0 --resume '" +
                                            (out / "b/last.safetensors") + "' --out '" + (out / "b") + "'");
  INFO(res.out << res.err);
  CHECK(res.status == 0);
  CHECK(res.out.find("anchors: tiny_ssd (custom) at input 128") != std::string::npos);
  auto bad = test::run_app("ssd_train", common + "--anchor-sizes 0.1,0.05 --out '" + (out / "c") + "'");
  CHECK(bad.status == 1);
  CHECK(one_line(bad.err));
  CHECK(bad.err.find("--anchor-sizes") != std::string::npos);
  auto bad2 = test::run_app("ssd_train", common + "--anchor-preset yolo --out '" + (out / "c") + "'");
  CHECK(bad2.status == 1);
  CHECK(bad2.err.find("not one of voc, coco, custom") != std::string::npos);
}

TEST_CASE("ssd_data synth --min-size / --max-size: small objects, bad values one line", "[anchor_fit][apps]") {
  test::TempDir dir("anchor_apps_synth");
  auto ok = test::run_app("ssd_data", "synth --out '" + (dir / "a") + "' --n 4 --min-size 0.05 --max-size 0.1");
  INFO(ok.out << ok.err);
  REQUIRE(ok.status == 0);
  auto fit = test::run_app("ssd_data", "anchors --data '" + (dir / "a") + "' --arch tiny_ssd");
  CHECK(fit.out.find("warning: the anchors fit the training boxes poorly") != std::string::npos);
  for (const std::string& args : {std::string("--min-size 0.5 --max-size 0.3"), std::string("--min-size nan"),
                                  std::string("--max-size 0.95"), std::string("--min-size 0"), std::string("--min-size x")}) {
    auto r = test::run_app("ssd_data", "synth --out '" + (dir / "b") + "' --n 2 " + args);
    INFO(args << " -> " << r.err);
    CHECK(r.status == 1);
    CHECK(one_line(r.err));
  }
}
