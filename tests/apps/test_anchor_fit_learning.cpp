// Issue 14 item 7, measured: on objects of 5-20% of the image side, tiny_ssd trained with the
// anchor sizes `ssd_data anchors` proposes reaches a clearly higher held-out mAP than with its
// default sizes, after the same fixed short run.
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "metrics_jsonl.h"
#include "common/trainer.h"
#include "data/synth.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using test::TempDir;

TEST_CASE("anchor fit: tiny_ssd learns small objects better with the proposed anchor sizes", "[anchor_fit][apps][slow]") {
  // Data as `ssd_data synth --n 300 --val 100 --seed 3 --min-size 0.05 --max-size 0.2
  // --classes 3 --size 192x192`; runs as `ssd_train --arch tiny_ssd --input-size 160 --iters
  // 400 --batch 8 --no-augment --lr 0.02 --seed 0 [--anchor-sizes P]`. Measured on 2 cores
  // (docs/training.md, "Anchors that fit the data"): defaults VOC07 mAP 0.607 (seed 1: 0.612),
  // proposed 0.787 (seed 1: 0.736); the defaults reach IoU 0.5 for 34.3% of the boxes, the
  // proposal for 80.1%. About 2.5 minutes per run.
  TempDir data_dir("anchor_learn_data"), def("anchor_learn_default"), prop("anchor_learn_proposed");
  data::SynthOptions o;
  o.width = 192;
  o.height = 192;
  o.num_classes = 3;
  o.min_size = 0.05;
  o.max_size = 0.2;
  data::write_synth_dataset(data_dir.path.string(), data::SynthFormat::Voc, 300, 100, 3, o);

  auto r = test::run_app("ssd_data", "anchors --data '" + data_dir.path.string() + "' --arch tiny_ssd --input-size 160");
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  REQUIRE(r.out.find("warning: the anchors fit the training boxes poorly") != std::string::npos);
  const size_t at = r.out.find("proposed: --anchor-sizes ");
  REQUIRE(at != std::string::npos);
  std::string sizes = r.out.substr(at + 25);
  sizes = sizes.substr(0, sizes.find_first_of(" \n"));

  auto config = [&](const std::string& out) {
    app::TrainConfig c;
    c.arch = "tiny_ssd";
    c.data = c.val = data_dir.path.string();
    c.input_size = 160;
    c.iters = 400;
    c.batch = 8;
    c.augment = false;
    c.lr = 0.02;
    c.seed = 0;
    c.workers = 1;
    c.log_every = 100;
    c.out = out;
    return c;
  };
  app::TrainConfig a = config(def.path.string());
  REQUIRE(app::train(a) == 0);
  app::TrainConfig b = config(prop.path.string());
  b.anchor_sizes = sizes;
  REQUIRE(app::train(b) == 0);
  const double m_def = test::final_voc07_map(def / "metrics.jsonl"), m_prop = test::final_voc07_map(prop / "metrics.jsonl");
  INFO("proposed sizes " << sizes << ": mAP " << m_prop << ", defaults: mAP " << m_def);
  CHECK(m_prop > m_def + 0.05);
}
