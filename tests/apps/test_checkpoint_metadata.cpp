// Checkpoint and weights metadata read strictly (issue 18): every integer is decimal, whole
// and in range ("abc" and "-1" for the seed are refused, no wrap to 2^64 - 1), every JSON
// value is checked, and each problem is one line naming the file, the key and the value.
#include <functional>
#include <map>
#include <string>

#include "common/checkpoint.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "models/factories.h"
#include "models/weights.h"
#include "temp_dir.h"
#include "test_helpers.h"

using namespace eng;

namespace {

std::shared_ptr<models::DetectionModel> tiny() {
  manual_seed(1);
  models::ModelConfig c;
  c.arch = "tiny_ssd";
  c.num_classes = 3;
  c.input_size = 128;
  c.anchor_preset = "voc";
  return models::make_tiny_ssd(c);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

// The metadata of a valid checkpoint of `model`, then `key` set to `value` (erased when
// `value` is "<none>"); written as a tensor-less file (metadata is read before weights).
std::string checkpoint_with(const test::TempDir& dir, const std::string& key, const std::string& value) {
  std::map<std::string, std::string> meta = {
      {"arch", "tiny_ssd"},   {"num_classes", "3"},     {"anchor_preset", "voc"},       {"input_size", "128"},
      {"iteration", "10"},    {"next_batch", "11"},     {"seed", "42"},                 {"best_metric", "-1.0"},
      {"best_iteration", "-1"}, {"optimizer_steps", "10"}, {"precision", "fp32"},
      {"classes", R"(["a", "b"])"}, {"category_ids", "[1, 2]"}};
  if (value == "<none>") meta.erase(key);
  else meta[key] = value;
  const std::string p = dir / "ckpt.safetensors";
  io::save_safetensors(p, {}, meta);
  return p;
}

}  // namespace

TEST_CASE("checkpoint metadata: bad integers name the file, the key and the value", "[apps][checkpoint]") {
  test::TempDir dir("ckpt_meta");
  auto model = tiny();
  optim::SGDOptions o;
  optim::SGD opt(model->named_parameters(), o);
  struct Case {
    const char* key;
    const char* value;
    const char* expect;
  };
  const Case cases[] = {
      {"seed", "abc", "metadata 'seed' is 'abc', not an integer in [0, 2^64 - 1]"},
      {"seed", "-1", "metadata 'seed' is '-1', not an integer in [0, 2^64 - 1]"},
      {"seed", "18446744073709551616", "'seed' is '18446744073709551616', not an integer"},
      {"seed", " 5", "'seed' is ' 5', not an integer"},
      {"seed", "+5", "'seed' is '+5', not an integer"},
      {"seed", "", "'seed' is '', not an integer"},
      {"iteration", "-3", "metadata 'iteration' is '-3', not an integer in [0, 9223372036854775807]"},
      {"iteration", "9223372036854775808", "'iteration' is '9223372036854775808', not an integer"},
      {"iteration", "1e3", "'iteration' is '1e3', not an integer"},
      {"next_batch", "12abc", "'next_batch' is '12abc', not an integer"},
      {"global_batch", "0", "metadata 'global_batch' is '0', not an integer in [1, 9223372036854775807]"},
      {"best_iteration", "-2", "'best_iteration' is '-2', not an integer in [-1, 9223372036854775807]"},
      {"optimizer_steps", "0x10", "'optimizer_steps' is '0x10', not an integer"},
      {"best_metric", "abc", "metadata 'best_metric' is 'abc', not valid JSON"},
      {"best_metric", "1e400", "metadata 'best_metric' is '1e400', not valid JSON"},
      {"best_metric", "\"0.5\"", "metadata 'best_metric' is '\"0.5\"', not a number"},
      {"precision", "fp8", "metadata 'precision' is 'fp8', not fp32, tf32 or bf16"},
      {"seed", "<none>", "not a training checkpoint (metadata has no 'seed')"},
  };
  for (const Case& c : cases) {
    INFO(c.key << " = " << c.value);
    const std::string p = checkpoint_with(dir, c.key, c.value);
    const std::string e = error_of([&] { app::load_checkpoint(p, *model, opt); });
    CHECK(e.rfind(p + ": ", 0) == 0);
    CHECK(e.find(c.expect) != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
  }
  // The largest seed is kept exactly (no double rounding, no sign).
  const std::string p = checkpoint_with(dir, "seed", "18446744073709551615");
  const std::string e = error_of([&] { app::load_checkpoint(p, *model, opt); });
  CHECK(e.find("seed") == std::string::npos);  // fails later, on the missing weights
}

TEST_CASE("checkpoint metadata: class list values are checked", "[apps][checkpoint]") {
  test::TempDir dir("ckpt_classes");
  struct Case {
    const char* key;
    const char* value;
    const char* expect;
  };
  const Case cases[] = {
      {"classes", "[\"a\", 3]", "metadata 'classes' entry 1 is 3, not a string"},
      {"classes", "{\"a\": 1}", "metadata 'classes' is '{\"a\": 1}', not a JSON list of names"},
      {"classes", "[\"a\"", "metadata 'classes' is '[\"a\"', not valid JSON"},
      {"category_ids", "[1, 1e400]", "'category_ids' is '[1, 1e400]', not valid JSON"},
      {"category_ids", "[1, 4294967297]", "'category_ids' entry 1 is 4294967297, not an integer in [-2^31, 2^31 - 1]"},
      {"category_ids", "[1, 2.5]", "'category_ids' entry 1 is 2.5, not an integer"},
      {"category_ids", "[1]", "2 classes but 1 category ids"},
  };
  for (const Case& c : cases) {
    INFO(c.key << " = " << c.value);
    const std::string p = checkpoint_with(dir, c.key, c.value);
    const std::string e = error_of([&] { app::read_class_list(p); });
    CHECK(e.rfind(p + ": ", 0) == 0);
    CHECK(e.find(c.expect) != std::string::npos);
  }
  const app::ClassList ok = app::read_class_list(checkpoint_with(dir, "category_ids", "[-2147483648, 2147483647]"));
  CHECK(ok.category_ids == std::vector<int>{INT32_MIN, INT32_MAX});
}

TEST_CASE("weights metadata: num_classes and input_size are strict, in-range integers", "[models][weights]") {
  test::TempDir dir("weights_meta");
  struct Case {
    const char* key;
    const char* value;
    const char* expect;
  };
  const Case cases[] = {
      {"num_classes", "abc", "weights metadata 'num_classes' is 'abc', not an integer in [1, 1000000]"},
      {"num_classes", "0", "'num_classes' is '0', not an integer in [1, 1000000]"},
      {"num_classes", "99999999999999999999", "'num_classes' is '99999999999999999999', not an integer"},
      {"input_size", "-300", "'input_size' is '-300', not an integer in [0, 65536]"},
      {"input_size", "300.0", "'input_size' is '300.0', not an integer"},
  };
  for (const Case& c : cases) {
    INFO(c.key << " = " << c.value);
    const std::string p = checkpoint_with(dir, c.key, c.value);
    const std::string e = error_of([&] { models::read_model_config(p); });
    CHECK(e.rfind(p + ": ", 0) == 0);
    CHECK(e.find(c.expect) != std::string::npos);
  }
  const models::ModelConfig c = models::read_model_config(checkpoint_with(dir, "input_size", "0"));
  CHECK((c.num_classes == 3 && c.input_size == 0 && c.arch == "tiny_ssd"));
}
