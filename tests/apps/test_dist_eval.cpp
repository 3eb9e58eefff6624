// Distributed evaluation (apps/common/dist_eval.h): ranks as threads of one process
// (eng::dist::make_thread_group), each evaluating its strided shard; the gathered result
// must equal the single-process evaluate_model exactly (same detections, same order, same
// metrics). Also the wire format's round trip and its refusal of a truncated buffer.
#include <thread>

#include "common/dist_eval.h"
#include "data/dataset.h"
#include "data/synth.h"
#include "engine/error.h"
#include "engine/random.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace {

const data::Dataset& val_set() {
  static test::TempDir dir("dist_eval_data");
  static const data::Dataset d = [] {
    data::SynthOptions o;
    o.width = 96;
    o.height = 80;
    o.num_classes = 3;
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, 4, 11, 7, o);
    return data::load_dataset(dir.path.string(), "test", "", "");
  }();
  return d;
}

std::shared_ptr<models::DetectionModel> model() {
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = 4;
  mc.input_size = 64;
  eng::manual_seed(3);
  return models::create_model(mc);
}

}  // namespace

TEST_CASE("distributed evaluation over 2 and 3 ranks equals the single-process evaluation", "[dist]") {
  const data::Dataset& d = val_set();
  REQUIRE(d.samples.size() == 11);
  app::InferenceOptions io;
  io.score_thresh = 0.01;  // an untrained model: keep enough detections to score
  auto m0 = model();
  const app::EvalRun single = app::evaluate_model(*m0, d, eng::Device::cpu(), io, 2, 0);
  REQUIRE(single.images.size() == 11);
  size_t found = 0;
  for (const auto& im : single.images) found += im.detections.size();
  REQUIRE(found > 0);
  for (int world : {2, 3}) {
    auto group = eng::dist::make_thread_group(world);
    std::vector<std::shared_ptr<models::DetectionModel>> replicas;
    for (int r = 0; r < world; ++r) replicas.push_back(model());  // the same weights (same seed)
    std::vector<app::EvalRun> runs(static_cast<size_t>(world));
    std::vector<std::string> errors(static_cast<size_t>(world));
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r)
      threads.emplace_back([&, r] {
        try {
          runs[static_cast<size_t>(r)] = app::evaluate_model_sharded(*replicas[static_cast<size_t>(r)], d,
                                                                     eng::Device::cpu(), io, 2, 0, *group[static_cast<size_t>(r)]);
        } catch (const std::exception& e) {
          errors[static_cast<size_t>(r)] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (int r = 0; r < world; ++r) {
      INFO("world " << world << " rank " << r << ": " << errors[static_cast<size_t>(r)]);
      REQUIRE(errors[static_cast<size_t>(r)].empty());
      const app::EvalRun& got = runs[static_cast<size_t>(r)];
      CHECK(got.result.map_voc07 == single.result.map_voc07);
      CHECK(got.result.map_coco == single.result.map_coco);
      CHECK(got.result.ap50 == single.result.ap50);
      REQUIRE(got.images.size() == single.images.size());
      for (size_t i = 0; i < got.images.size(); ++i) {
        CHECK(got.images[i].file == single.images[i].file);
        REQUIRE(got.images[i].detections.size() == single.images[i].detections.size());
        for (size_t k = 0; k < got.images[i].detections.size(); ++k) {
          CHECK(got.images[i].detections[k].score == single.images[i].detections[k].score);
          const data::Box& x = got.images[i].detections[k].box;
          const data::Box& y = single.images[i].detections[k].box;
          CHECK(x.x1 == y.x1);
          CHECK(x.y1 == y.y1);
          CHECK(x.x2 == y.x2);
          CHECK(x.y2 == y.y2);
          CHECK(got.images[i].detections[k].category_id == single.images[i].detections[k].category_id);
        }
      }
    }
  }
}

TEST_CASE("distributed evaluation: the detections' wire format round-trips and refuses truncation", "[dist]") {
  app::ShardImage a;
  a.index = 4;
  a.width = 640;
  a.height = 480;
  a.found = {{2, 0.75, {1, 2, 30, 40}}, {0, 0.5, {5.5, 6.25, 7, 8}}};
  app::ShardImage b;
  b.index = 9;
  const auto bytes = app::encode_shard({a, b});
  const auto back = app::decode_shard(bytes);
  REQUIRE(back.size() == 2);
  CHECK(back[0].index == 4);
  CHECK(back[0].width == 640);
  REQUIRE(back[0].found.size() == 2);
  CHECK(back[0].found[1].box.y1 == 6.25);
  CHECK(back[0].found[0].label == 2);
  CHECK(back[1].found.empty());
  for (size_t cut : {size_t{0}, size_t{5}, bytes.size() - 1}) {
    const std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    CHECK_THROWS_AS(app::decode_shard(part), eng::Error);
  }
  std::vector<uint8_t> extra = bytes;
  extra.push_back(0);
  CHECK_THROWS_WITH(app::decode_shard(extra), Catch::Contains("left over"));
}
