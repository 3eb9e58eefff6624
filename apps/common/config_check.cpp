#include "common/config_check.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "engine/error.h"
#include "models/detection_model.h"

namespace app {

namespace {

// Bounds far beyond any real run that still keep all arithmetic on them in int64
// (iterations x batch, epochs x batches per epoch).
constexpr double kMaxIters = 1e12;
constexpr double kMaxEpochs = 1e6;
constexpr double kMaxBatch = 1024;
// Loader threads: each holds a decoded photo and a batch in flight; 256 is far above the
// cores of any one machine (more threads only add memory and contention), and low enough
// that a typo (100000) is refused before the system runs out of threads.
constexpr double kMaxWorkers = 256;
constexpr double kMaxTopk = 100000;
constexpr double kMaxClasses = 100000;
constexpr double kMaxReps = 100000;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string number_text(double v) {
  if (v >= 9.2e18 && std::isfinite(v)) return "9223372036854775807";  // the int64 bounds
  if (v <= -9.2e18 && std::isfinite(v)) return "-9223372036854775808";
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e18) {
    return std::to_string(static_cast<int64_t>(v));
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The value as the user may have typed it, quoted when it has spaces or is empty;
// control characters shown as '?', so the message stays one line.
std::string shown(const std::string& text) {
  std::string s;
  for (char ch : text) s += (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ? '?' : ch;
  if (s.size() > 64) s = s.substr(0, 64) + "...";
  if (s.empty() || s.find(' ') != std::string::npos) s = "'" + s + "'";
  return s;
}

bool all_digits(const char* p) {
  if (*p == '\0') return false;
  for (; *p; ++p)
    if (*p < '0' || *p > '9') return false;
  return true;
}

const std::vector<std::string>& arch_names() {
  static const std::vector<std::string> names = models::model_names();
  return names;
}

}  // namespace

// ------------------------------------------------------------------------------ rules
std::string NumberRule::allowed() const {
  std::string s;
  switch (kind) {
    case NumberKind::UInt:
      s = "an integer in 0.." + std::to_string(std::numeric_limits<uint64_t>::max());
      break;
    case NumberKind::Int:
      s = "an integer in " + number_text(lo) + ".." + number_text(hi);
      break;
    case NumberKind::Real:
      if (std::isinf(hi) && std::isinf(lo)) {
        s = "a finite number";
      } else if (std::isinf(hi)) {
        s = std::string("a finite number ") + (lo_open ? "> " : ">= ") + number_text(lo);
      } else {
        s = lo_open ? "a number > " + number_text(lo) + " and <= " + number_text(hi)
                    : "a number in " + number_text(lo) + ".." + number_text(hi);
      }
      break;
  }
  if (!note.empty()) s += " " + note;
  if (has_special) s += " (or " + number_text(special) + ": " + special_meaning + ")";
  return s;
}

std::string NumberRule::short_range() const {
  const std::string top = std::isinf(hi) ? "inf" : number_text(hi);
  if (kind == NumberKind::Real && std::isinf(lo) && std::isinf(hi)) return "finite";
  std::string s = kind == NumberKind::UInt ? "0..2^64-1"
                  : lo_open               ? "(" + number_text(lo) + ", " + top + (std::isinf(hi) ? ")" : "]")
                                          : number_text(lo) + ".." + top;
  if (has_special) s += "|" + number_text(special);
  return s;
}

bool NumberRule::accepts(double v) const {
  if (!std::isfinite(v)) return false;
  if (has_special && v == special) return true;
  if (kind == NumberKind::UInt) return v >= 0;
  if (kind == NumberKind::Int && v != std::floor(v)) return false;
  return (lo_open ? v > lo : v >= lo) && v <= hi;
}

NumberRule int_rule(const std::string& flag, double lo, double hi) {
  NumberRule r;
  r.flag = flag;
  r.kind = NumberKind::Int;
  r.lo = lo;
  r.hi = hi;
  return r;
}

NumberRule uint_rule(const std::string& flag) {
  NumberRule r;
  r.flag = flag;
  r.kind = NumberKind::UInt;
  return r;
}

NumberRule real_rule(const std::string& flag, double lo, double hi, bool lo_open) {
  NumberRule r;
  r.flag = flag;
  r.kind = NumberKind::Real;
  r.lo = lo;
  r.hi = hi;
  r.lo_open = lo_open;
  return r;
}

NumberRule with_special(NumberRule r, double value, const std::string& meaning) {
  r.has_special = true;
  r.special = value;
  r.special_meaning = meaning;
  return r;
}

// ------------------------------------------------------------------------------ parsing
std::string parse_flag_number(const NumberRule& rule, const std::string& text, std::string& canonical) {
  const std::string refused = shown(text) + " is not " + rule.allowed();
  if (text.empty() || text.size() > 400) return refused;
  const char* s = text.c_str();
  char* end = nullptr;
  errno = 0;
  if (rule.kind == NumberKind::UInt) {
    if (!all_digits(s)) return refused;  // no sign: strtoull would wrap "-1" to 2^64-1
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (errno == ERANGE || *end != '\0') return refused;
    canonical = std::to_string(v);
    return "";
  }
  if (rule.kind == NumberKind::Int) {
    if (!all_digits(s + ((s[0] == '-' || s[0] == '+') ? 1 : 0))) return refused;
    const long long v = std::strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0') return refused;  // ERANGE: saturated, not the value typed
    if (!rule.accepts(static_cast<double>(v))) return refused;
    canonical = std::to_string(v);
    return "";
  }
  // Real: strtod's syntax (decimal or hex), finite, not over- or underflowing.
  if (std::isspace(static_cast<unsigned char>(s[0]))) return refused;
  const double v = std::strtod(s, &end);
  if (errno == ERANGE || *end != '\0' || end == s || !rule.accepts(v)) return refused;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  canonical = buf;
  return "";
}

void check_value(const NumberRule& rule, int64_t value) {
  const bool ok = rule.kind == NumberKind::UInt ? value >= 0 : rule.accepts(static_cast<double>(value));
  ENGINE_CHECK(ok, rule.flag, ": ", value, " is not ", rule.allowed());
}

void check_value(const NumberRule& rule, int value) { check_value(rule, static_cast<int64_t>(value)); }

void check_value(const NumberRule& rule, double value) {
  ENGINE_CHECK(rule.accepts(value), rule.flag, ": ", number_text(value), " is not ", rule.allowed());
}

std::vector<int64_t> parse_int_list(const NumberRule& rule, const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    std::string canonical;
    const std::string err = parse_flag_number(rule, item, canonical);
    ENGINE_CHECK(err.empty(), rule.flag, ": ", err, " (in ", shown(text), ")");
    out.push_back(std::stoll(canonical));
  }
  ENGINE_CHECK(!out.empty() && (text.empty() || text.back() != ','), rule.flag, ": ", shown(text),
               " is not a comma-separated list of ", rule.allowed());
  return out;
}

void check_member(const std::string& flag, const std::string& value, const std::vector<std::string>& allowed,
                  bool allow_empty) {
  if (allow_empty && value.empty()) return;
  for (const std::string& a : allowed)
    if (value == a) return;
  std::string list;
  for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
  ENGINE_FAIL(flag, ": ", shown(value), " is not one of ", list);
}

const NumberRule& rule_of(const std::vector<NumberRule>& rules, const std::string& flag) {
  for (const NumberRule& r : rules)
    if (r.flag == flag) return r;
  throw std::logic_error("config_check: no rule for " + flag);
}

// ------------------------------------------------------------------------------ tables
int input_size_min(const std::string& arch) {
  if (arch == "ssd300_vgg16" || arch == "retinanet_resnet50_fpn") return 128;
  if (arch == "ssd512_vgg16") return 256;
  return 64;  // tiny_ssd, and the smallest of all when the architecture is not known yet
}

NumberRule input_size_rule(const std::string& flag, const std::string& arch, bool zero_is_default) {
  NumberRule r = int_rule(flag, input_size_min(arch), kInputSizeMax);
  const auto& names = arch_names();
  if (std::find(names.begin(), names.end(), arch) != names.end()) r.note = "for " + arch;
  return zero_is_default ? with_special(r, 0, "the architecture's default") : r;
}

const std::vector<NumberRule>& train_rules() {
  static const std::vector<NumberRule> rules = {
      input_size_rule("--input-size", "", true),
      int_rule("--batch", 1, kMaxBatch),
      int_rule("--iters", 0, kMaxIters),
      int_rule("--epochs", 0, kMaxEpochs),
      real_rule("--time-limit", 0, 1e9),
      // torch.optim.SGD accepts any lr >= 0. lr = 0 is refused here (a run whose weights cannot
      // move is a mistake; evaluate with ssd_detect / ssd_eval). No upper bound: a diverging
      // run ends at the NaN stop (exit 1), which the tests use with lr 1e12.
      with_special(real_rule("--lr", 0, kInf, /*lo_open=*/true), -1, "the architecture's default"),
      real_rule("--momentum", 0, 1),
      real_rule("--wd", 0, 1),
      real_rule("--clip-grad-norm", 0, kInf),  // 0: off
      with_special(int_rule("--warmup", 0, kMaxIters), -1, "the architecture's default"),
      int_rule("--workers", 0, kMaxWorkers),
      int_rule("--eval-every", 0, kMaxIters),
      int_rule("--save-every", 0, kMaxIters),
      int_rule("--log-every", 1, kMaxIters),
      int_rule("--eval-batch", 1, kMaxBatch),
      uint_rule("--seed"),
      with_special(int_rule("--profile", 0, kMaxIters), -1, "off"),
      int_rule("--max-gt", 1, kMaxTopk),
      real_rule("--dist-timeout", 1, 1e6),
      int_rule("--accum", 1, 4096),
      with_special(int_rule("--trainable-backbone-layers", 0, 5), -1, "the architecture's default"),
      with_special(int_rule("--rpn-top-n-train", 1, 100000), 0, "the architecture's default"),
      with_special(int_rule("--rpn-top-n-test", 1, 100000), 0, "the architecture's default"),
      with_special(int_rule("--min-size", 1, kInputSizeMax), 0, "the input size"),
      with_special(int_rule("--max-size", 1, kInputSizeMax), 0, "the input size"),
  };
  return rules;
}

const std::vector<NumberRule>& detect_rules() {
  static const std::vector<NumberRule> rules = {
      int_rule("--batch", 1, kMaxBatch),
      int_rule("--workers", 0, kMaxWorkers),
      with_special(real_rule("--score-thresh", 0, 1), -1, "the architecture's default"),
      with_special(real_rule("--nms-thresh", 0, 1), -1, "the architecture's default"),
      with_special(int_rule("--topk", 1, kMaxTopk), -1, "the architecture's default"),
      real_rule("--draw-thresh", 0, 1),
      int_rule("--num-classes", 2, kMaxClasses),
      input_size_rule("--input-size", "", true),
  };
  return rules;
}

const std::vector<NumberRule>& synth_rules() {
  static const std::vector<NumberRule> rules = {
      int_rule("--n", 1, 999999),  // data::write_synth_dataset: at most 999999 images in all
      int_rule("--val", 0, 999998),
      uint_rule("--seed"),
      int_rule("--classes", 1, 10),
  };
  return rules;
}

const std::vector<NumberRule>& demo_rules() {
  static const std::vector<NumberRule> rules = {
      int_rule("--iters", 1, 1e9),
      int_rule("--batch", 1, 4096),
      real_rule("--lr", 0, 10, /*lo_open=*/true),
      uint_rule("--seed"),
  };
  return rules;
}

const std::vector<NumberRule>& bench_models_rules() {
  static const std::vector<NumberRule> rules = {
      int_rule("--reps", 1, kMaxReps),
      int_rule("--warmup", 0, kMaxReps),
      with_special(int_rule("--batch", 1, kMaxBatch), 0, "the recipe's"),
      with_special(int_rule("--infer-batch", 1, kMaxBatch), 0, "32, 4 on the cpu"),
      input_size_rule("--input-size", "", true),
      int_rule("--loader-images", 1, 1e7),
      int_rule("--workers", 0, kMaxWorkers),
  };
  return rules;
}

const std::vector<NumberRule>& bench_kernels_rules() {
  static const std::vector<NumberRule> rules = {int_rule("--reps", 1, kMaxReps)};
  return rules;
}

// ------------------------------------------------------------------------------ configs
namespace {
std::string exact(double v) {  // round-trips: two ranks' values compare equal only if equal
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

void check(const TrainConfig& c) {
  const auto& r = train_rules();
  check_member("--arch", c.arch, arch_names(), /*allow_empty=*/true);  // empty: from --resume
  check_member("--device", c.device, {"cpu", "cuda"});
  // --precision and --image-transfer: checked by name where they are resolved
  // (common/precision.cpp, the trainer's loader setup), and by CLI::IsMember in the apps.
  check_value(input_size_rule("--input-size", c.arch, true), c.input_size);
  check_value(rule_of(r, "--batch"), c.batch);
  check_value(rule_of(r, "--iters"), c.iters);
  check_value(rule_of(r, "--epochs"), c.epochs);
  check_value(rule_of(r, "--time-limit"), c.time_limit);
  check_value(rule_of(r, "--lr"), c.lr);
  check_value(rule_of(r, "--momentum"), c.momentum);
  check_value(rule_of(r, "--wd"), c.wd);
  check_value(rule_of(r, "--clip-grad-norm"), c.clip_grad_norm);
  check_value(rule_of(r, "--warmup"), c.warmup);
  check_value(rule_of(r, "--workers"), c.workers);
  check_value(rule_of(r, "--eval-every"), c.eval_every);
  check_value(rule_of(r, "--save-every"), c.save_every);
  check_value(rule_of(r, "--log-every"), c.log_every);
  check_value(rule_of(r, "--eval-batch"), c.eval_batch);
  check_value(rule_of(r, "--profile"), c.profile);
  check_value(rule_of(r, "--max-gt"), c.max_gt);
  check_value(rule_of(r, "--dist-timeout"), c.dist_timeout);
  check_value(rule_of(r, "--accum"), c.accum);
  check_value(rule_of(r, "--trainable-backbone-layers"), c.trainable_backbone_layers);
  check_value(rule_of(r, "--rpn-top-n-train"), c.rpn_top_n_train);
  check_value(rule_of(r, "--rpn-top-n-test"), c.rpn_top_n_test);
  check_value(rule_of(r, "--min-size"), c.min_size);
  check_value(rule_of(r, "--max-size"), c.max_size);
  check_member("--dist", c.dist, {"auto", "none"});
  check_member("--crop-rule", c.crop_rule, {"any", "every"});
  check_member("--matcher", c.matcher, {"ssd", "bipartite"}, /*allow_empty=*/true);
  check_member("--backbone-norm", c.backbone_norm, {"frozen", "batch"}, /*allow_empty=*/true);
  check_member("--dist-backend", c.dist_backend, {"auto", "nccl", "mpi"});
  // --steps: iterations at which the LR drops, increasing (each one is one x0.1 drop).
  const NumberRule steps = int_rule("--steps", 1, kMaxIters);
  for (size_t i = 0; i < c.steps.size(); ++i) {
    check_value(steps, c.steps[i]);
    ENGINE_CHECK(i == 0 || c.steps[i] > c.steps[i - 1], "--steps: ", c.steps[i], " after ", c.steps[i - 1],
                 " (the iterations must be increasing)");
  }
  // --multiscale: sides drawn per batch; any order (each batch draws one), repeats weigh more.
  const NumberRule ms = input_size_rule("--multiscale", c.arch, false);
  for (int s : c.multiscale) check_value(ms, s);
}

void check(const InferenceOptions& o, const std::string& arch) {
  const auto& r = detect_rules();
  check_value(rule_of(r, "--score-thresh"), o.score_thresh);
  check_value(rule_of(r, "--nms-thresh"), o.nms_thresh);
  check_value(rule_of(r, "--topk"), o.topk);
  const NumberRule scales = input_size_rule("--scales", arch, false);
  for (int s : o.scales) check_value(scales, s);
}

void check(const DetectConfig& c) {
  const auto& r = detect_rules();
  check_member("--arch", c.arch, arch_names(), /*allow_empty=*/true);  // empty: from the weights
  check_member("--device", c.device, {"cpu", "cuda"});
  check_value(rule_of(r, "--batch"), c.batch);
  check_value(rule_of(r, "--workers"), c.workers);
  check_value(rule_of(r, "--draw-thresh"), c.draw_thresh);
  check(c.inference, c.arch);
}

// Every argument that must be the same on all ranks, as "key=value" lines (compared with
// rank 0's at start: a mismatch is one line naming the first differing argument).
std::vector<std::string> rank_agreement_lines(const TrainConfig& c) {
  auto list = [](const auto& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
  };
  return {"--arch=" + c.arch, "--data=" + c.data, "--split=" + c.split, "--images=" + c.images,
          "--val=" + c.val, "--val-split=" + c.val_split, "--classes=" + c.classes,
          "--input-size=" + std::to_string(c.input_size), "--device=" + c.device, "--precision=" + c.precision,
          "--deterministic=" + std::to_string(c.deterministic), "--image-transfer=" + c.image_transfer,
          "--batch=" + std::to_string(c.batch), "--iters=" + std::to_string(c.iters),
          "--epochs=" + std::to_string(c.epochs), "--time-limit=" + exact(c.time_limit),
          "--lr=" + exact(c.lr), "--momentum=" + exact(c.momentum), "--wd=" + exact(c.wd),
          "--warmup=" + std::to_string(c.warmup), "--steps=" + list(c.steps), "--out=" + c.out,
          "--resume=" + c.resume, "--init=" + c.init, "--backbone=" + c.backbone,
          "--eval-every=" + std::to_string(c.eval_every), "--save-every=" + std::to_string(c.save_every),
          "--log-every=" + std::to_string(c.log_every), "--multiscale=" + list(c.multiscale),
          "--seed=" + std::to_string(c.seed), "--augment=" + std::to_string(c.augment),
          "--eval-batch=" + std::to_string(c.eval_batch), "--clip-grad-norm=" + exact(c.clip_grad_norm),
          "--dist-backend=" + c.dist_backend, "--dist-timeout=" + exact(c.dist_timeout),
          "--sync-bn=" + std::to_string(c.sync_bn), "--accum=" + std::to_string(c.accum),
          "--cuda-graph=" + std::to_string(c.cuda_graph), "--max-gt=" + std::to_string(c.max_gt)};
}

std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  return s;
}

}  // namespace app
