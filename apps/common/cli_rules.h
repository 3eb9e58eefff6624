// Installs the numeric flag rules of common/config_check.h on a CLI11 command line: each
// rule's option gets a transform that parses the text strictly (parse_flag_number) before
// CLI11 converts it, and hands CLI11 the canonical text. So "--iters 9223372036854775808"
// (CLI11 2.1 would saturate it), "--seed -1" (it would wrap), "--lr nan", "--batch 010"
// (it would read octal 8) are refused with "--flag: <value> is not <allowed>".
// Header-only: apps link CLI11, app_common does not.
#pragma once
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config_check.h"

namespace app {

// A numeric option that `rules` does not name (a flag added later) still gets the strict
// parse of its type (INT: int64 without saturation, UINT: no sign, FLOAT: finite), so it can
// never take NaN, inf or a saturated value; give it a rule for its real range.
inline void apply_rules(CLI::App& cli, std::vector<NumberRule> rules) {
  for (const CLI::Option* opt : cli.get_options()) {
    const std::string type = opt->get_type_name(), name = opt->get_name();
    bool named = false;
    for (const NumberRule& r : rules) named = named || r.flag == name;
    if (named || name.rfind("--", 0) != 0) continue;
    if (type == "INT") rules.push_back(int_rule(name, -9223372036854775807.0, 9223372036854775807.0));
    if (type == "UINT") rules.push_back(uint_rule(name));
    if (type == "FLOAT") rules.push_back(real_rule(name, -HUGE_VAL, HUGE_VAL));
  }
  for (const NumberRule& rule : rules) {
    CLI::Option* opt = cli.get_option_no_throw(rule.flag);
    if (opt == nullptr) throw std::logic_error("apply_rules: no option " + rule.flag);  // a program bug
    opt->transform(CLI::Validator(
        [rule](std::string& text) {
          std::string canonical;
          std::string err = parse_flag_number(rule, text, canonical);
          if (err.empty()) text = canonical;
          return err;
        },
        rule.short_range(), "range"));
  }
}

// The one line a program prints for a command-line error ("<program>: <message>").
inline std::string cli_error_line(const char* program, const CLI::ParseError& e) {
  return std::string(program) + ": " + one_line(e.what());
}

}  // namespace app
