// The range checks of the programs' settings (apps/common/config_check.h): the strict
// number parser the command lines use, the rule tables, and check(TrainConfig) /
// check(DetectConfig) that app::train / app::detect run before anything is read.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "common/config_check.h"
#include "common/detect_run.h"
#include "common/trainer.h"
#include "engine/error.h"

using Catch::Contains;

namespace {

// "" when accepted (then `canonical` holds the text CLI11 converts), else the message.
std::string parsed(const app::NumberRule& rule, const std::string& text, std::string* canonical = nullptr) {
  std::string c;
  const std::string err = app::parse_flag_number(rule, text, c);
  if (canonical) *canonical = c;
  return err;
}

std::string train_error(const app::TrainConfig& c) {
  try {
    app::check(c);
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

std::string detect_error(const app::DetectConfig& c) {
  try {
    app::check(c);
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("config_check: integers are decimal, within int64 and the rule's range", "[apps][cli]") {
  const app::NumberRule iters = app::int_rule("--iters", 0, 1e12);
  std::string canonical;
  CHECK(parsed(iters, "1000", &canonical).empty());
  CHECK(canonical == "1000");
  CHECK(parsed(iters, "010", &canonical).empty());  // decimal 10 (CLI11 alone reads octal 8)
  CHECK(canonical == "10");
  CHECK(parsed(iters, "+7", &canonical).empty());
  CHECK(canonical == "7");
  CHECK(parsed(iters, "1000000000000").empty());
  // strtoll saturates these to INT64_MAX / INT64_MIN: refused, naming the value typed.
  CHECK(parsed(iters, "9223372036854775808") == "9223372036854775808 is not an integer in 0..1000000000000");
  CHECK_THAT(parsed(iters, "-9223372036854775809"), Contains("-9223372036854775809 is not"));
  for (const char* bad : {"1000000000001", "-1", "1e3", "1.5", "0x10", " 5", "5 ", "", "abc", "nan", "inf", "+", "-",
                          "--5", "5,6"})
    CHECK_FALSE(parsed(iters, bad).empty());
}

TEST_CASE("config_check: unsigned integers take no sign (no wrap of -1)", "[apps][cli]") {
  const app::NumberRule seed = app::uint_rule("--seed");
  std::string canonical;
  CHECK(parsed(seed, "18446744073709551615", &canonical).empty());
  CHECK(canonical == "18446744073709551615");
  CHECK(parsed(seed, "0").empty());
  CHECK(parsed(seed, "-1") == "-1 is not an integer in 0..18446744073709551615");
  CHECK_FALSE(parsed(seed, "18446744073709551616").empty());
  CHECK_FALSE(parsed(seed, "+1").empty());
  CHECK_FALSE(parsed(seed, "1.0").empty());
}

TEST_CASE("config_check: reals are finite, in range, with their special value", "[apps][cli]") {
  const app::NumberRule lr = app::with_special(
      app::real_rule("--lr", 0, std::numeric_limits<double>::infinity(), true), -1, "the architecture's default");
  std::string canonical;
  CHECK(parsed(lr, "0.05", &canonical).empty());
  CHECK(std::stod(canonical) == 0.05);
  CHECK(parsed(lr, "-1").empty());
  CHECK(parsed(lr, "1e12").empty());
  CHECK(parsed(lr, "0x1p-4", &canonical).empty());
  CHECK(std::stod(canonical) == 0.0625);
  CHECK(parsed(lr, "nan") == "nan is not a finite number > 0 (or -1: the architecture's default)");
  for (const char* bad : {"0", "-0", "-0.5", "-2", "inf", "-inf", "1e400", "1e-400", "", " 1", "1 ", "0.1x", "abc"})
    CHECK_FALSE(parsed(lr, bad).empty());

  const app::NumberRule nms = app::with_special(app::real_rule("--nms-thresh", 0, 1), -1, "default");
  CHECK(parsed(nms, "0").empty());
  CHECK(parsed(nms, "1").empty());
  CHECK(parsed(nms, "-1").empty());
  CHECK(parsed(nms, "1.0000001") == "1.0000001 is not a number in 0..1 (or -1: default)");
  CHECK_FALSE(parsed(nms, "-0.5").empty());
}

TEST_CASE("config_check: messages stay on one line and are short", "[apps][cli]") {
  const app::NumberRule batch = app::int_rule("--batch", 1, 1024);
  const std::string err = parsed(batch, "12\n34");
  CHECK(err.find('\n') == std::string::npos);
  CHECK_THAT(err, Contains("12?34"));
  CHECK(parsed(batch, std::string(10000, '9')).size() < 200);
  CHECK(app::one_line("a\nb\r\nc\t") == "a b  c");
}

TEST_CASE("config_check: lists", "[apps][cli]") {
  const app::NumberRule steps = app::int_rule("--steps", 1, 1e12);
  CHECK(app::parse_int_list(steps, "100,200") == std::vector<int64_t>{100, 200});
  CHECK_THROWS_WITH(app::parse_int_list(steps, "100,x"), Contains("--steps: x is not an integer in 1..") &&
                                                             Contains("(in 100,x)"));
  CHECK_THROWS_WITH(app::parse_int_list(steps, "100,"), Contains("--steps"));
  CHECK_THROWS_WITH(app::parse_int_list(steps, ",100"), Contains("--steps"));
  CHECK_THROWS_WITH(app::parse_int_list(steps, ""), Contains("--steps"));
  CHECK_THROWS_WITH(app::parse_int_list(steps, "0"), Contains("--steps: 0 is not"));
}

TEST_CASE("config_check: the default TrainConfig and DetectConfig pass", "[apps][cli]") {
  CHECK(train_error(app::TrainConfig{}).empty());
  CHECK(detect_error(app::DetectConfig{}).empty());
}

TEST_CASE("config_check: check(TrainConfig) names the flag, the value and the range", "[apps][cli]") {
  auto with = [](auto set) {
    app::TrainConfig c;
    set(c);
    return train_error(c);
  };
  CHECK(with([](auto& c) { c.lr = std::nan(""); }) ==
        "--lr: nan is not a finite number > 0 (or -1: the architecture's default)");
  CHECK(with([](auto& c) { c.lr = 0; }) == "--lr: 0 is not a finite number > 0 (or -1: the architecture's default)");
  CHECK(with([](auto& c) { c.lr = -1; }).empty());  // the documented default
  CHECK(with([](auto& c) { c.warmup = -7; }) ==
        "--warmup: -7 is not an integer in 0..1000000000000 (or -1: the architecture's default)");
  CHECK(with([](auto& c) { c.iters = std::numeric_limits<int64_t>::max(); }) ==
        "--iters: 9223372036854775807 is not an integer in 0..1000000000000");
  CHECK(with([](auto& c) { c.workers = 100000; }) == "--workers: 100000 is not an integer in 0..256");
  CHECK(with([](auto& c) { c.batch = 0; }) == "--batch: 0 is not an integer in 1..1024");
  CHECK_THAT(with([](auto& c) { c.momentum = std::nan(""); }), Contains("--momentum: nan"));
  CHECK_THAT(with([](auto& c) { c.wd = -1; }), Contains("--wd: -1"));
  CHECK_THAT(with([](auto& c) { c.time_limit = std::numeric_limits<double>::infinity(); }),
             Contains("--time-limit: inf"));
  CHECK_THAT(with([](auto& c) { c.epochs = -1; }), Contains("--epochs: -1"));
  CHECK_THAT(with([](auto& c) { c.log_every = 0; }), Contains("--log-every: 0"));
  CHECK_THAT(with([](auto& c) { c.profile = -2; }), Contains("--profile: -2"));
  CHECK_THAT(with([](auto& c) { c.max_gt = 0; }), Contains("--max-gt: 0"));
  CHECK_THAT(with([](auto& c) { c.eval_batch = 0; }), Contains("--eval-batch: 0"));
  CHECK(with([](auto& c) { c.steps = {100, 50}; }) == "--steps: 50 after 100 (the iterations must be increasing)");
  CHECK(with([](auto& c) { c.steps = {100, 100}; }) == "--steps: 100 after 100 (the iterations must be increasing)");
  CHECK(with([](auto& c) { c.steps = {10, 20, 30}; }).empty());
  CHECK_THAT(with([](auto& c) { c.steps = {0}; }), Contains("--steps: 0 is not"));
  CHECK(with([](auto& c) { c.multiscale = {96, 64, 96}; }).empty());  // any order, repeats allowed
  CHECK_THAT(with([](auto& c) { c.multiscale = {64, 32}; }), Contains("--multiscale: 32 is not an integer in 64..4096"));
  // The input side as the architecture needs it.
  CHECK(with([](auto& c) { c.arch = "tiny_ssd", c.input_size = 64; }).empty());
  CHECK(with([](auto& c) { c.arch = "ssd512_vgg16", c.input_size = 200; }) ==
        "--input-size: 200 is not an integer in 256..4096 for ssd512_vgg16 (or 0: the architecture's default)");
  CHECK_THAT(with([](auto& c) { c.arch = "ssd300_vgg16", c.multiscale = {100}; }),
             Contains("--multiscale: 100 is not an integer in 128..4096 for ssd300_vgg16"));
  CHECK_THAT(with([](auto& c) { c.input_size = 5000; }), Contains("--input-size: 5000"));
  // Fixed sets.
  CHECK(with([](auto& c) { c.arch = "foo"; }) ==
        "--arch: foo is not one of tiny_ssd, ssd300_vgg16, ssd512_vgg16, retinanet_resnet50_fpn, ssdlite320_mobilenet_v3_large, "
        "ssd512_resnet18_v1, ssd512_resnet50_v1, ssd512_resnet101_v2, ssd512_resnet152_v2, ssd512_mobilenet1_0, "
        "ssd300_mobilenet0_25, fasterrcnn_resnet50_fpn");
  CHECK(with([](auto& c) { c.device = "gpu"; }) == "--device: gpu is not one of cpu, cuda");
  // Two-stage / ResNet-FPN options: -1 and 0 are the architecture's defaults.
  CHECK(with([](auto& c) { c.trainable_backbone_layers = 6; }) ==
        "--trainable-backbone-layers: 6 is not an integer in 0..5 (or -1: the architecture's default)");
  CHECK(with([](auto& c) { c.trainable_backbone_layers = -1; }).empty());
  CHECK(with([](auto& c) { c.trainable_backbone_layers = 0; }).empty());
  CHECK(with([](auto& c) { c.rpn_top_n_train = -5; }) ==
        "--rpn-top-n-train: -5 is not an integer in 1..100000 (or 0: the architecture's default)");
  CHECK_THAT(with([](auto& c) { c.rpn_top_n_test = 200000; }), Contains("--rpn-top-n-test: 200000"));
  CHECK(with([](auto& c) { c.rpn_top_n_train = 0, c.rpn_top_n_test = 100000; }).empty());
}

TEST_CASE("config_check: app::train refuses a bad config before touching any file", "[apps][cli]") {
  app::TrainConfig c;
  c.data = "/nonexistent/voc";
  c.out = "/proc/nonexistent/out";
  c.iters = 5;
  c.lr = std::nan("");
  CHECK_THROWS_WITH(app::train(c), Contains("--lr: nan"));
}

TEST_CASE("config_check: check(DetectConfig) covers the inference options", "[apps][cli]") {
  auto with = [](auto set) {
    app::DetectConfig c;
    set(c);
    return detect_error(c);
  };
  CHECK(with([](auto& c) { c.inference.topk = 0; }) ==
        "--topk: 0 is not an integer in 1..100000 (or -1: the architecture's default)");
  CHECK(with([](auto& c) { c.inference.nms_thresh = std::nan(""); }) ==
        "--nms-thresh: nan is not a number in 0..1 (or -1: the architecture's default)");
  CHECK_THAT(with([](auto& c) { c.inference.score_thresh = std::nan(""); }), Contains("--score-thresh: nan"));
  CHECK_THAT(with([](auto& c) { c.inference.score_thresh = 1.5; }), Contains("--score-thresh: 1.5"));
  CHECK(with([](auto& c) { c.inference.score_thresh = 0, c.inference.nms_thresh = 1, c.inference.topk = 1; }).empty());
  CHECK_THAT(with([](auto& c) { c.inference.scales = {64, 10}; }), Contains("--scales: 10"));
  CHECK_THAT(with([](auto& c) { c.batch = 0; }), Contains("--batch: 0"));
  CHECK_THAT(with([](auto& c) { c.workers = -1; }), Contains("--workers: -1"));
  CHECK_THAT(with([](auto& c) { c.draw_thresh = std::nan(""); }), Contains("--draw-thresh: nan"));
  CHECK_THAT(with([](auto& c) { c.device = "tpu"; }), Contains("--device: tpu"));
  CHECK_THAT(with([](auto& c) { c.arch = "x"; }), Contains("--arch: x"));

  app::DetectConfig c;
  c.weights = "/nonexistent/w.safetensors";
  c.inputs = {"/nonexistent/a.jpg"};
  c.out = "/proc/nonexistent/out";
  c.inference.topk = 0;
  CHECK_THROWS_WITH(app::detect(c), Contains("--topk: 0"));
}

TEST_CASE("config_check: every rule table is consistent", "[apps][cli]") {
  for (const auto* table : {&app::train_rules(), &app::detect_rules(), &app::synth_rules(), &app::demo_rules(),
                            &app::bench_models_rules(), &app::bench_kernels_rules()}) {
    for (const app::NumberRule& r : *table) {
      INFO(r.flag);
      CHECK(r.flag.rfind("--", 0) == 0);
      CHECK(&app::rule_of(*table, r.flag) == &r);  // no flag twice
      if (r.kind != app::NumberKind::UInt) CHECK(r.lo <= r.hi);
      CHECK_FALSE(r.allowed().empty());
    }
  }
  CHECK_THROWS_AS(app::rule_of(app::train_rules(), "--nope"), std::logic_error);
  CHECK(app::input_size_min("tiny_ssd") == 64);
  CHECK(app::input_size_min("ssd300_vgg16") == 128);
  CHECK(app::input_size_min("ssd512_vgg16") == 256);
  CHECK(app::input_size_min("retinanet_resnet50_fpn") == 128);
}
