#include "models/anchor_scales.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "engine/error.h"
#include "models/gluon_ssd.h"

namespace models {

const std::vector<std::string>& anchor_preset_names() {
  static const std::vector<std::string> names = {"voc", "coco", "custom"};
  return names;
}

int64_t anchor_scale_count(const std::string& arch) {
  if (arch == "tiny_ssd") return 6;
  if (arch == "ssd300_vgg16") return 7;
  if (arch == "ssd512_vgg16") return 8;
  if (is_gluon_ssd_arch(arch)) return static_cast<int64_t>(gluon_ssd_preset(arch).sizes_voc.size());
  return 0;
}

namespace {

std::string shown(const std::string& s) { return s.size() > 40 ? s.substr(0, 37) + "..." : s; }

void check_scales(const std::vector<double>& s, const std::string& what) {
  for (size_t i = 0; i < s.size(); ++i) {
    ENGINE_CHECK(std::isfinite(s[i]) && s[i] > 0 && s[i] <= kMaxAnchorScale, what, ": scale ", i, " is ", s[i],
                 ", not in (0, ", kMaxAnchorScale, "] (fractions of the input side)");
    ENGINE_CHECK(i == 0 || s[i] > s[i - 1], what, ": scales must increase, but scale ", i, " (", s[i],
                 ") is not above scale ", i - 1, " (", s[i - 1], ")");
  }
}

}  // namespace

void check_anchor_config(const ModelConfig& c) {
  const auto& names = anchor_preset_names();
  bool known = false;
  for (const auto& n : names) known = known || n == c.anchor_preset;
  ENGINE_CHECK(known, "anchor preset '", shown(c.anchor_preset), "' is not one of voc, coco, custom");
  if (c.anchor_preset != "custom") {
    ENGINE_CHECK(c.anchor_scales.empty(), "anchor sizes given with preset '", c.anchor_preset,
                 "' (custom sizes need the preset 'custom')");
    return;
  }
  const int64_t want = anchor_scale_count(c.arch);
  ENGINE_CHECK(want > 0, "anchor preset 'custom': ", c.arch,
               " takes no custom anchor sizes (tiny_ssd, ssd300_vgg16, ssd512_vgg16 and the GluonCV presets do)");
  ENGINE_CHECK(static_cast<int64_t>(c.anchor_scales.size()) == want, "anchor preset 'custom': ", c.arch, " takes ", want,
               " anchor scales (one per feature level plus one), got ", c.anchor_scales.size());
  check_scales(c.anchor_scales, "anchor sizes");
}

std::vector<double> parse_anchor_scales(const std::string& text, const std::string& what) {
  std::vector<double> out;
  ENGINE_CHECK(!text.empty() && text.back() != ',', what, ": '", shown(text),
               "' is not a comma-separated list of scales in (0, ", kMaxAnchorScale, "]");
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    // Decimal reals only: digits, one '.', an optional exponent; no sign, hex, inf or nan.
    bool ok = !item.empty() && item.size() <= 32;
    for (char ch : item) ok = ok && (std::isdigit(static_cast<unsigned char>(ch)) || ch == '.' || ch == 'e' || ch == 'E' || ch == '-' || ch == '+');
    ok = ok && (std::isdigit(static_cast<unsigned char>(item[0])) || item[0] == '.');
    double v = 0;
    if (ok) {
      char* end = nullptr;
      errno = 0;
      v = std::strtod(item.c_str(), &end);
      ok = end == item.c_str() + item.size() && errno == 0 && std::isfinite(v);
    }
    ENGINE_CHECK(ok, what, ": '", shown(item), "' (in '", shown(text), "') is not a number in (0, ", kMaxAnchorScale, "]");
    out.push_back(v);
  }
  check_scales(out, what);
  return out;
}

std::string format_anchor_scales(const std::vector<double>& scales, int precision) {
  std::string out;
  char buf[64];
  for (double s : scales) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, s);
    out += (out.empty() ? "" : ",") + std::string(buf);
  }
  return out;
}

std::vector<double> level_sizes(const std::vector<double>& scales, size_t k) {
  ENGINE_CHECK(k + 1 < scales.size(), "level_sizes: level ", k, " needs ", k + 2, " scales, got ", scales.size());
  return {scales[k], std::sqrt(scales[k] * scales[k + 1])};
}

}  // namespace models
