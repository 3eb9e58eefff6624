// The report page rendered by a real browser engine: headless Chromium takes a screenshot
// of a report and the PNG must show the charts (not a blank page): enough non-white pixels,
// many colours, and pixels of the loss, box-loss and mAP series colours.
// Where Chromium is not installed the test prints "skipped: ..." and exits with 77, which
// tests/CMakeLists.txt registers as this file's SKIP_RETURN_CODE: CTest reports a skip, never
// a pass. CI installs Debian's `chromium`.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "common/report_run.h"
#include "data/image.h"
#include "temp_dir.h"

namespace fs = std::filesystem;

namespace {

// $ENGINE_CHROMIUM when set ("none": act as if absent, to check the skip), else the first
// browser found on PATH; "" when none.
std::string find_chromium() {
  if (const char* env = std::getenv("ENGINE_CHROMIUM")) return std::string(env) == "none" ? "" : env;
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    const std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return name;
  }
  return "";
}

void skip(const std::string& why) {
  std::printf("skipped: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(77);  // tests/CMakeLists.txt: SKIP_RETURN_CODE 77 for this file
}

// Pixels within 40 (sum of channel differences) of `hex` ("#rrggbb").
int64_t pixels_near(const data::Image& img, const std::string& hex) {
  const int r = std::stoi(hex.substr(1, 2), nullptr, 16), g = std::stoi(hex.substr(3, 2), nullptr, 16),
            b = std::stoi(hex.substr(5, 2), nullptr, 16);
  int64_t n = 0;
  for (size_t i = 0; i + 2 < img.rgb.size(); i += 3)
    if (std::abs(img.rgb[i] - r) + std::abs(img.rgb[i + 1] - g) + std::abs(img.rgb[i + 2] - b) < 40) ++n;
  return n;
}

}  // namespace

TEST_CASE("report: headless Chromium renders the page with its charts", "[apps][report]") {
  const std::string browser = find_chromium();
  if (browser.empty()) skip("headless Chromium is not installed (apt-get install chromium)");
  test::TempDir d("report_render");
  std::string text;
  for (int i = 1; i <= 60; ++i) {
    const double loss = 20.0 / (1 + 0.2 * i) * (1 + 0.15 * ((i * 7) % 5 - 2) / 2.0);
    text += "{\"iteration\":" + std::to_string(10 * i) + ",\"loss\":" + std::to_string(loss) +
            ",\"loss_cls\":" + std::to_string(0.65 * loss) + ",\"loss_box\":" + std::to_string(0.35 * loss) +
            ",\"lr\":" + std::to_string(i < 40 ? 0.05 : 0.005) + ",\"img_per_s\":" + std::to_string(40 + i % 5) +
            ",\"elapsed_s\":" + std::to_string(2.0 * i) + "}\n";
    if (i % 20 == 0)
      text += "{\"iteration\":" + std::to_string(10 * i) + ",\"map_voc07\":" + std::to_string(0.2 + 0.004 * i) +
              ",\"map_coco\":" + std::to_string(0.08 + 0.002 * i) +
              ",\"per_class\":[{\"name\":\"circle\",\"num_gt\":9,\"ap_voc07\":0.6,\"ap_coco\":0.3,"
              "\"pr\":[[0,1],[0.3,0.9],[0.6,0.7],[0.8,0.4]]},{\"name\":\"square\",\"num_gt\":5,\"ap_voc07\":0.4,"
              "\"ap_coco\":0.2,\"pr\":[[0,0.8],[0.5,0.6],[0.7,0.3]]}]}\n";
  }
  std::ofstream(d / "metrics.jsonl") << text;
  app::report::ReportOptions o;
  o.run_dir = d.path.string();
  const auto written = app::report::write_report(o);
  const std::string png = d / "shot.png";
  const std::string cmd = "timeout 120 " + browser +
                          " --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1400"
                          " --screenshot='" + png + "' 'file://" + written.path + "' >'" + (d / "chromium.log") +
                          "' 2>&1";
  const int rc = std::system(cmd.c_str());
  INFO("chromium exit status " << rc << "; its log is " << (d / "chromium.log"));
  REQUIRE(fs::exists(png));
  const data::Image img = data::load_image(png);
  CHECK(img.width == 1280);
  CHECK(img.height == 1400);
  int64_t ink = 0;
  std::set<uint32_t> colours;
  for (size_t i = 0; i + 2 < img.rgb.size(); i += 3) {
    const int r = img.rgb[i], g = img.rgb[i + 1], b = img.rgb[i + 2];
    if (r + g + b < 3 * 235) ++ink;
    colours.insert(static_cast<uint32_t>(r << 16 | g << 8 | b));
  }
  const int64_t total = static_cast<int64_t>(img.width) * img.height;
  CHECK(ink > total / 50);      // at least 2% drawn (text, frames, curves, bars)
  CHECK(colours.size() > 100);  // antialiased lines in several colours, not a flat page
  CHECK(pixels_near(img, "#1f77b4") > 200);  // the loss line
  CHECK(pixels_near(img, "#2ca02c") > 200);  // loss_box and images/s
  CHECK(pixels_near(img, "#d62728") > 100);  // the VOC07 mAP line and AP bars
}
