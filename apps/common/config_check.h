// Range checks of the programs' settings: every numeric flag of every app has a rule (its
// kind and allowed values), checked twice:
//  - on the command line, on the text BEFORE any conversion (common/cli_rules.h installs
//    parse_flag_number as a CLI11 transform): strict decimal syntax, no NaN / inf, no value
//    that does not fit the field (CLI11 2.1 saturates an out-of-range int64 and wraps "-1"
//    into a uint64 without a word), and the rule's range;
//  - on the config structs (check(TrainConfig), check(DetectConfig)), which app::train and
//    app::detect call first, so library callers get the same one-line errors.
// Every message is one line "<flag>: <value> is not <allowed values>", e.g.
//   --lr: nan is not a number > 0 and <= 100 (or -1: the architecture's default)
// The ranges are documented in docs/training.md (flag tables).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/detect_run.h"
#include "common/inference.h"
#include "common/trainer.h"

namespace app {

enum class NumberKind { Int, UInt, Real };

struct NumberRule {
  std::string flag;
  NumberKind kind = NumberKind::Int;
  double lo = 0, hi = 0;      // Int / Real: inclusive bounds (UInt: any uint64; Real hi may be inf)
  bool lo_open = false;       // Real: lo itself excluded (a learning rate > 0)
  bool has_special = false;   // one value outside the range with its own meaning
  double special = 0;
  std::string special_meaning;
  std::string note;           // appended to the range, e.g. "for ssd512_vgg16"
  // "an integer in 1..1024 (or -1: the architecture's default)"
  std::string allowed() const;
  // The short form for --help: "1..1024", "(0, 100]", "0..1|-1".
  std::string short_range() const;
  bool accepts(double v) const;
};

NumberRule int_rule(const std::string& flag, double lo, double hi);
NumberRule uint_rule(const std::string& flag);
NumberRule real_rule(const std::string& flag, double lo, double hi, bool lo_open = false);
NumberRule with_special(NumberRule r, double value, const std::string& meaning);

// Parses a flag's text strictly by its rule. Returns "" and the canonical text (decimal
// integer, or %.17g) when it is accepted, else the message without the flag:
// "<text> is not <allowed>". Integers: optional sign and decimal digits only (no octal or
// hex, no spaces), within int64 (UInt: uint64, no sign); reals: strtod syntax, finite.
std::string parse_flag_number(const NumberRule& rule, const std::string& text, std::string& canonical);

// Throws eng::Error "<flag>: <value> is not <allowed>" when the rule refuses `value`.
void check_value(const NumberRule& rule, int64_t value);
void check_value(const NumberRule& rule, double value);
void check_value(const NumberRule& rule, int value);

// A comma-separated list of integers, each by `rule` ("--steps: 'x' (in '100,x') is not ...").
std::vector<int64_t> parse_int_list(const NumberRule& rule, const std::string& text);
// A string flag with a fixed set of values ("" allowed when allow_empty: the default).
void check_member(const std::string& flag, const std::string& value, const std::vector<std::string>& allowed,
                  bool allow_empty = false);

// The rules of each program's numeric flags (names as on the command line).
const std::vector<NumberRule>& train_rules();         // ssd_train
const std::vector<NumberRule>& detect_rules();        // ssd_detect
const std::vector<NumberRule>& synth_rules();         // ssd_data synth
const std::vector<NumberRule>& demo_rules();          // demo_train
const std::vector<NumberRule>& bench_models_rules();  // bench_models
const std::vector<NumberRule>& bench_kernels_rules(); // bench_kernels
// The rule named `flag` in `rules` (std::logic_error when there is none: a program bug).
const NumberRule& rule_of(const std::vector<NumberRule>& rules, const std::string& flag);

// The smallest input side each architecture's layer arithmetic accepts (the models check
// the same in set_input_size); "" or an unknown name: the smallest of all (64).
int input_size_min(const std::string& arch);
constexpr int kInputSizeMax = 4096;  // the loader's limit (data/loader.h)
// The input-size rule for `arch` ("--input-size", "--multiscale", "--scales").
NumberRule input_size_rule(const std::string& flag, const std::string& arch, bool zero_is_default);

// Whole-config checks (one eng::Error naming the first bad flag). They check values, not
// files: nothing is read.
void check(const TrainConfig& c);
void check(const DetectConfig& c);
void check(const InferenceOptions& o, const std::string& arch = "");

// Error text on one line: line breaks and other control characters become spaces.
std::string one_line(std::string s);

// Every training argument that must be the same on all ranks of a data-parallel run, as
// "--flag=value" lines; the ranks compare them with rank 0's at start
// (common/distributed.h), so a mismatch names the first differing flag.
std::vector<std::string> rank_agreement_lines(const TrainConfig& c);

}  // namespace app
