// apply_rules (apps/common/cli_rules.h) on a CLI11 command line: what Debian's CLI11 2.1.2
// does with out-of-range numbers on its own (saturates int64, wraps "-1" into uint64, reads
// "010" as octal, accepts nan), and that with the rules each of these is one error naming
// the flag and the value, and numeric options without a rule still get their type's strict
// parse.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cli_rules.h"

namespace {

struct Flags {
  int64_t iters = 0;
  uint64_t seed = 0;
  double lr = 0;
  int batch = 0;
  double clip = 0;   // no rule: the FLOAT fallback
  int64_t count = 0; // no rule: the INT fallback
};

void add(CLI::App& cli, Flags& f) {
  cli.add_option("--iters", f.iters);
  cli.add_option("--seed", f.seed);
  cli.add_option("--lr", f.lr);
  cli.add_option("--batch", f.batch);
  cli.add_option("--clip", f.clip);
  cli.add_option("--count", f.count);
}

// "" when parsed, else the error text.
std::string parse(CLI::App& cli, std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("prog")};
  for (std::string& a : args) argv.push_back(a.data());
  try {
    cli.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

const std::vector<app::NumberRule> kRules = {
    app::int_rule("--iters", 0, 1e12),
    app::uint_rule("--seed"),
    app::with_special(app::real_rule("--lr", 0, HUGE_VAL, true), -1, "default"),
    app::int_rule("--batch", 1, 1024),
};

}  // namespace

TEST_CASE("cli_rules: CLI11 alone saturates, wraps, reads octal and takes nan", "[apps][cli]") {
  // The behaviour the rules guard against (if a CLI11 update changes it, this test says so).
  Flags f;
  CLI::App cli;
  add(cli, f);
  REQUIRE(parse(cli, {"--iters", "9223372036854775808", "--seed", "-1", "--batch", "010", "--lr", "nan"}).empty());
  CHECK(f.iters == INT64_MAX);
  CHECK(f.seed == UINT64_MAX);
  CHECK(f.batch == 8);
  CHECK(std::isnan(f.lr));
}

TEST_CASE("cli_rules: with the rules each bad value is one error naming flag and value", "[apps][cli]") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--iters", "9223372036854775808"}, "--iters: 9223372036854775808 is not an integer in 0..1000000000000"},
      {{"--seed", "-1"}, "--seed: -1 is not an integer in 0..18446744073709551615"},
      {{"--lr", "nan"}, "--lr: nan is not a finite number > 0 (or -1: default)"},
      {{"--batch", "2147483648"}, "--batch: 2147483648 is not an integer in 1..1024"},
      {{"--batch", "0"}, "--batch: 0 is not an integer in 1..1024"},
      {{"--clip", "nan"}, "--clip: nan is not a finite number"},
      {{"--clip", "-inf"}, "--clip: -inf is not a finite number"},
      {{"--count", "9223372036854775808"},
       "--count: 9223372036854775808 is not an integer in -9223372036854775808..9223372036854775807"},
      {{"--count", "1.5"}, "--count: 1.5 is not an integer in"},
  };
  for (const auto& [args, message] : cases) {
    Flags f;
    CLI::App cli;
    add(cli, f);
    app::apply_rules(cli, kRules);
    INFO(args[0] << " " << args[1]);
    const std::string err = parse(cli, args);
    CHECK_THAT(err, Catch::StartsWith(message));
    CHECK(err.find('\n') == std::string::npos);
  }
}

TEST_CASE("cli_rules: values in range arrive as typed, decimal", "[apps][cli]") {
  Flags f;
  CLI::App cli;
  add(cli, f);
  app::apply_rules(cli, kRules);
  REQUIRE(parse(cli, {"--iters", "1000000000000", "--seed", "18446744073709551615", "--batch", "010", "--lr", "-1",
                      "--clip", "0.25", "--count", "-9223372036854775808"})
              .empty());
  CHECK(f.iters == 1000000000000);
  CHECK(f.seed == UINT64_MAX);
  CHECK(f.batch == 10);
  CHECK(f.lr == -1);
  CHECK(f.clip == 0.25);
  CHECK(f.count == INT64_MIN);
  CHECK(cli.get_option("--batch")->get_type_name() == "INT:1..1024");  // the range shows in --help
}

TEST_CASE("cli_rules: a rule for a flag that does not exist is a program error", "[apps][cli]") {
  CLI::App cli;
  int x = 0;
  cli.add_option("--x", x);
  CHECK_THROWS_AS(app::apply_rules(cli, {app::int_rule("--y", 0, 1)}), std::logic_error);
}
