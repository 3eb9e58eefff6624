// bench_data: image decoding speed of stb_image (the old decoder) against libjpeg-turbo /
// libpng (the current ones) on the same files, and the SSD training input pipeline per core
// with each.
//
//   bench_data [--sizes 500x375,1280x960] [--images N] [--reps R] [--input-size S] [FILE ...]
//
// Without files, N scenes per size are rendered by the synthetic-data generator
// (data/synth.h, as `ssd_data synth` makes them) and encoded in memory as JPEG quality 95
// (the generator's setting) and as PNG. With files, those are read once into memory and
// grouped into one set. Each decoder decodes every image of a set R times; the best of the
// R passes is reported as ms per megapixel of the image's full size (so the 1/2, 1/4 and 1/8
// JPEG rows say what a reduced decode costs per megapixel of the photo).
//
// Pipeline rows: for every JPEG of a set, decode -> augment_ssd (default SSD augmentation,
// seeded per image) -> resize_normalize_into S x S (default 300), which is what the
// training Loader does per image, and decode -> resize (evaluation); "stb" decodes at full
// size, "libjpeg-turbo" reduces as the Loader does (data::LoaderOptions::scaled_decode: at
// least S / crop_min_scale per side in training, S in evaluation). One thread: images/s is
// per core.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/detail/image_decoders.h"
#include "data/image.h"
#include "data/synth.h"
#include "engine/error.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Encoded {
  std::vector<uint8_t> bytes;
  int width = 0, height = 0;
  std::vector<data::Object> objects;  // synthetic scenes: the boxes (files: none)
};

struct Set {
  std::string name;
  std::vector<Encoded> jpeg, png;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double megapixels(const std::vector<Encoded>& v) {
  double mp = 0;
  for (const Encoded& e : v) mp += e.width * static_cast<double>(e.height) / 1e6;
  return mp;
}

// One timed configuration: a name and one pass over a set's images.
struct Config {
  std::string format, decoder, scale;
  std::function<uint64_t()> pass;  // returns a checksum (keeps the work from being dropped)
  double mp = 0;                   // megapixels per pass (full size)
  double best = 1e30;              // best pass, seconds
};

// `reps` rounds, each running every configuration once in turn (so that all see the same
// machine load: this host is shared), keeping each one's best pass.
void run_interleaved(std::vector<Config>& configs, int reps, uint64_t& checksum) {
  for (int r = 0; r < reps; ++r)
    for (Config& c : configs) {
      const Clock::time_point t0 = Clock::now();
      checksum += c.pass();
      c.best = std::min(c.best, seconds_since(t0));
    }
}

template <typename Decode>
std::function<uint64_t()> decode_pass(const std::vector<Encoded>& v, Decode decode) {
  return [&v, decode] {
    uint64_t sum = 0;
    for (const Encoded& e : v) {
      const data::Image im = decode(e);
      sum += im.rgb.empty() ? 0 : im.rgb[im.rgb.size() / 2];
    }
    return sum;
  };
}

void row(const std::string& set, const std::string& format, const std::string& decoder, const std::string& scale,
         double sec, double mp) {
  std::printf("| %s | %s | %s | %s | %.2f | %.1f |\n", set.c_str(), format.c_str(), decoder.c_str(), scale.c_str(),
              sec * 1e3 / mp, mp / sec);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_data: stb_image vs libjpeg-turbo/libpng decoding, and the SSD input pipeline per core"};
  std::string sizes = "500x375,1280x960";
  int images = 8, reps = 3, input_size = 300;
  std::vector<std::string> files;
  app.add_option("--sizes", sizes, "synthetic image sizes WxH, comma-separated");
  app.add_option("--images", images, "synthetic images per size")->check(CLI::Range(1, 1000));
  app.add_option("--reps", reps, "passes per decoder (the best is reported)")->check(CLI::Range(1, 100));
  app.add_option("--input-size", input_size, "pipeline output side")->check(CLI::Range(8, 4096));
  app.add_option("files", files, "JPEG/PNG files to use instead of synthetic scenes");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Set> sets;
    if (!files.empty()) {
      Set s;
      s.name = "files";
      for (const std::string& f : files) {
        std::ifstream in(f, std::ios::binary);
        ENGINE_CHECK(in.good(), f, ": cannot open file");
        Encoded e;
        e.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        const data::Image im = data::decode_image(e.bytes.data(), e.bytes.size(), f);
        e.width = im.width;
        e.height = im.height;
        (e.bytes[0] == 0xFF ? s.jpeg : s.png).push_back(std::move(e));
      }
      sets.push_back(std::move(s));
    } else {
      size_t start = 0;
      while (start <= sizes.size()) {
        const size_t comma = std::min(sizes.find(',', start), sizes.size());
        data::SynthOptions o;
        data::parse_synth_size(sizes.substr(start, comma - start), o);
        Set s;
        s.name = std::to_string(o.width) + "x" + std::to_string(o.height);
        for (int i = 0; i < images; ++i) {
          const data::SynthScene scene = data::render_scene(o, data::synth_image_seed(7, 0, i));
          s.jpeg.push_back({data::detail::encode_jpg(scene.image, 95, s.name), o.width, o.height, scene.objects});
          s.png.push_back({data::detail::encode_png(scene.image, s.name), o.width, o.height, scene.objects});
        }
        sets.push_back(std::move(s));
        start = comma + 1;
      }
    }

    uint64_t checksum = 0;
    std::printf("| images | format | decoder | scale | ms per MP | MP/s |\n|---|---|---|---|---|---|\n");
    for (const Set& s : sets) {
      std::vector<Config> configs;
      const std::string& nm = s.name;
      if (!s.jpeg.empty()) {
        configs.push_back({"JPEG", "stb_image", "1", decode_pass(s.jpeg, [&nm](const Encoded& e) {
                             return data::detail::decode_with_stb(e.bytes.data(), e.bytes.size(), nm);
                           }), megapixels(s.jpeg)});
        for (int d : {1, 2, 4, 8})
          configs.push_back({"JPEG", "libjpeg-turbo", d == 1 ? "1" : "1/" + std::to_string(d),
                             decode_pass(s.jpeg, [&nm, d](const Encoded& e) {
                               return data::detail::decode_jpeg(e.bytes.data(), e.bytes.size(), nm, {}, {}, d).image;
                             }), megapixels(s.jpeg)});
      }
      if (!s.png.empty()) {
        configs.push_back({"PNG", "stb_image", "1", decode_pass(s.png, [&nm](const Encoded& e) {
                             return data::detail::decode_with_stb(e.bytes.data(), e.bytes.size(), nm);
                           }), megapixels(s.png)});
        configs.push_back({"PNG", "libpng", "1", decode_pass(s.png, [&nm](const Encoded& e) {
                             return data::detail::decode_png(e.bytes.data(), e.bytes.size(), nm, {});
                           }), megapixels(s.png)});
      }
      run_interleaved(configs, reps, checksum);
      for (const Config& c : configs) row(s.name, c.format, c.decoder, c.scale, c.best, c.mp);
    }

    // How far the two JPEG decoders' pixels are apart (IDCT and chroma upsampling differ).
    std::printf("\n| images | mean abs difference stb vs libjpeg-turbo (grey levels) | max | values differing by > 2 |\n|---|---|---|---|\n");
    for (const Set& s : sets) {
      double sum = 0, n = 0, over2 = 0;
      int worst = 0;
      for (const Encoded& e : s.jpeg) {
        const data::Image a = data::detail::decode_with_stb(e.bytes.data(), e.bytes.size(), s.name);
        const data::Image b = data::detail::decode_jpeg(e.bytes.data(), e.bytes.size(), s.name, {}, {}, 1).image;
        for (size_t i = 0; i < a.rgb.size() && i < b.rgb.size(); ++i) {
          const int d = std::abs(int(a.rgb[i]) - int(b.rgb[i]));
          sum += d;
          worst = std::max(worst, d);
          over2 += d > 2;
          n += 1;
        }
      }
      if (n > 0) std::printf("| %s | %.3f | %d | %.2f%% |\n", s.name.c_str(), sum / n, worst, 100 * over2 / n);
    }

    // The input pipelines per image, one thread: training (decode, SSD augmentation, resize)
    // and evaluation (decode, resize).
    const data::AugmentOptions aug;
    const std::vector<double> mean{123.675, 116.28, 103.53}, stdev{58.395, 57.12, 57.375};
    std::vector<float> out(static_cast<size_t>(3) * input_size * input_size);
    std::printf("\n| images | pipeline | decoder | img/s per core |\n|---|---|---|---|\n");
    for (const Set& s : sets) {
      if (s.jpeg.empty()) continue;
      std::vector<Config> configs;
      for (int train = 1; train >= 0; --train) {
        // The Loader's minimum decoded side (data/src/loader.cpp, decode_options_for).
        const int need = train ? static_cast<int>(std::ceil(input_size / aug.crop_min_scale)) : input_size;
        const int denom = data::jpeg_scale_denom_for(s.jpeg[0].width, s.jpeg[0].height, {need, need});
        for (int which = 0; which < 2; ++which) {
          const std::string name = s.name;
          auto pass = [&s, &aug, &mean, &stdev, &out, name, train, which, need, input_size] {
            uint64_t sum = 0;
            for (size_t i = 0; i < s.jpeg.size(); ++i) {
              const Encoded& e = s.jpeg[i];
              data::AnnotatedImage a;
              a.objects = e.objects;
              if (which == 0) {
                a.image = data::detail::decode_with_stb(e.bytes.data(), e.bytes.size(), name);
              } else {  // boxes onto the reduced decode, as the Loader maps them
                a.image = data::detail::decode_jpeg(e.bytes.data(), e.bytes.size(), name, {}, {need, need}).image;
                const double fx = double(a.image.width) / e.width, fy = double(a.image.height) / e.height;
                for (data::Object& o : a.objects) o.box = {o.box.x1 * fx, o.box.y1 * fy, o.box.x2 * fx, o.box.y2 * fy};
              }
              data::AnnotatedImage g;
              const data::Image* img = &a.image;
              if (train) {
                g = data::augment_ssd(a, data::sample_seed(3, 0, i), aug);
                img = &g.image;
              }
              data::resize_normalize_into(*img, input_size, input_size, mean, stdev, out.data());
              sum += static_cast<uint64_t>(out[out.size() / 2] != 0);
            }
            return sum;
          };
          configs.push_back({train ? "SSD augmentation + resize to " + std::to_string(input_size)
                                   : "resize to " + std::to_string(input_size),
                             which == 0 ? "stb_image, full size"
                                        : "libjpeg-turbo at the Loader's scale (1/" + std::to_string(denom) + ")",
                             "", pass, static_cast<double>(s.jpeg.size())});
        }
      }
      run_interleaved(configs, reps, checksum);
      for (const Config& c : configs)
        std::printf("| %s | %s | %s | %.1f |\n", s.name.c_str(), c.format.c_str(), c.decoder.c_str(), c.mp / c.best);
    }
    std::printf("\n(checksum %llu)\n", static_cast<unsigned long long>(checksum));
  } catch (const eng::Error& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  return 0;
}
