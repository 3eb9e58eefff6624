// bench_models: end-to-end timings of the registered detectors, and of the data loader.
//
//   bench_models [--device cpu|cuda] [--model NAME,...] [--precision fp32|tf32|bf16]
//                [--mode train,infer] [--reps N] [--warmup N] [--batch N] [--infer-batch N]
//                [--input-size S] [--json FILE]
//   bench_models --loader DIR [--split S] [--loader-images N] [--workers N] [--input-size S] [--json FILE]
//
// Model rows (synthetic inputs: N(0,1) images and three fixed boxes per image, so the
// numbers do not depend on a dataset):
//   train  one optimizer step: forward_heads + loss + backward + SGD step (momentum 0.9,
//          weight decay 5e-4), at the recipe's batch (docs/training.md: SSD 32, RetinaNet
//          16, tiny_ssd 32); on the CPU a smaller default batch (4), said in the row's note.
//   infer  eval mode, no grad: forward_heads + det post-processing (score threshold, top-k,
//          class-wise NMS) with the detections read back to the host, at batch 1 (latency)
//          and --infer-batch (throughput, default 32; 4 on the CPU).
// Each mode runs --warmup untimed repetitions, then --reps timed ones; a repetition ends
// with a host read of its result (so on CUDA it includes the synchronisation). median_ms is
// the median repetition, img_per_s = batch * 1000 / median_ms, peak_mem_mb the allocator's
// high-water mark over the mode (warm-up included; parameters and optimizer state count).
//
// --loader DIR times the training input pipeline alone: a Loader with --workers threads
// (default 1; 0 builds the batches on the calling thread) and batch 1 over the VOC dataset
// at DIR: decode, SSD augmentation, resize to --input-size (default 300) and
// normalisation. Its row has mode "loader", img_per_s, img_per_s_per_core and the per-core
// rate times 16 (an extrapolation to a 16-core host, not a measurement).
//
// JSON (--json FILE): {"rows": [{model, mode, batch, precision, device, threads,
// input_size, median_ms, img_per_s, peak_mem_mb, reps, note}, ...]}.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/cli_rules.h"
#include "common/precision.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "engine/cpu_threads.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "models/detection_model.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string device = "cpu";
  std::vector<std::string> models;
  std::string precision;
  std::vector<std::string> modes = {"train", "infer"};
  int reps = 3;
  int warmup = 1;
  int batch = 0;        // 0: the recipe's (CPU: 4)
  int infer_batch = 0;  // 0: 32 (CPU: 4)
  int input_size = 0;   // 0: the architecture's default
  std::string json;
  std::string loader_dir;
  std::string split = "trainval";
  int loader_images = 64;
  int workers = 1;
};

struct Row {
  std::string model, mode, precision, device, note;
  int batch = 0, threads = 1, input_size = 0, reps = 0;
  double median_ms = 0, img_per_s = 0, peak_mem_mb = 0;
  nlohmann::json extra = nlohmann::json::object();
};

std::vector<std::string> split_list(const std::string& text, const char* flag) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    ENGINE_CHECK(!item.empty(), flag, ": empty name in '", text, "'");
    out.push_back(item);
  }
  ENGINE_CHECK(!out.empty() && text.back() != ',', flag, ": empty name in '", text, "'");
  return out;
}

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Recipe batch sizes (docs/training.md): SSD300/512 at 32 (SSD paper), RetinaNet at 16
// (torchvision's reference), tiny_ssd at 32 (d2l).
int recipe_batch(const std::string& arch) {
  return arch == "retinanet_resnet50_fpn" || arch == "fasterrcnn_resnet50_fpn" ? 16 : 32;
}

// Dataset conventions of the recipes: SSD / TinySSD on VOC (20 classes + background),
// RetinaNet and Faster R-CNN on COCO (torchvision's 91 indices).
models::ModelConfig model_config(const std::string& arch, int input_size) {
  models::ModelConfig mc;
  mc.arch = arch;
  const bool coco = arch == "retinanet_resnet50_fpn" || arch == "fasterrcnn_resnet50_fpn";
  mc.num_classes = coco ? 91 : 21;
  mc.anchor_preset = coco ? "coco" : "voc";
  mc.input_size = input_size;
  return mc;
}

// Three fixed boxes per image (corners in input pixels), labels 1..3.
models::Targets synthetic_targets(int64_t n, int64_t s, eng::Device device) {
  const float f[3][4] = {{0.10f, 0.15f, 0.45f, 0.60f}, {0.50f, 0.40f, 0.90f, 0.95f}, {0.30f, 0.05f, 0.55f, 0.30f}};
  std::vector<float> boxes;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 3; ++j) {
      for (int q = 0; q < 4; ++q) boxes.push_back(f[j][q] * static_cast<float>(s));
      labels.push_back(j + 1);
    }
  const std::vector<int64_t> counts(static_cast<size_t>(n), 3);
  return {eng::from_vector(boxes, {n, 3, 4}).to(device), eng::from_vector(labels, {n, 3}).to(device),
          eng::from_vector(counts, {n}).to(device)};
}

void reset_peak(eng::Device device) {
  if (device.is_cuda()) {
    eng::cuda::synchronize();
    eng::cuda::alloc::reset_peak();
  } else {
    eng::cpu_alloc::reset_peak();
  }
}

double peak_mb(eng::Device device) {
  const eng::MemoryStats s = device.is_cuda() ? eng::cuda::alloc::stats() : eng::cpu_alloc::stats();
  return static_cast<double>(s.peak_allocated) / (1 << 20);
}

// Runs `step` warmup + reps times; returns the per-repetition times in ms of the timed ones.
template <typename F>
std::vector<double> time_reps(int warmup, int reps, F&& step) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t = Clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  return ms;
}

Row make_row(const Options& o, const std::string& arch, const char* mode, app::Precision p, int batch, int size,
             const std::vector<double>& ms, double mem, std::string note) {
  Row r;
  r.model = arch;
  r.mode = mode;
  r.precision = app::precision_name(p);
  r.device = o.device;
  r.batch = batch;
  r.threads = o.device == "cpu" ? num_threads() : 1;
  r.input_size = size;
  r.reps = static_cast<int>(ms.size());
  r.median_ms = median(ms);
  r.img_per_s = r.median_ms > 0 ? batch * 1000.0 / r.median_ms : 0;
  r.peak_mem_mb = mem;
  r.note = std::move(note);
  return r;
}

void print_header() {
  std::printf("%-24s %-6s %-5s %6s %5s %10s %10s %10s  %s\n", "model", "mode", "prec", "batch", "size", "median_ms",
              "img/s", "peak_MB", "note");
}

void print_row(const Row& r) {
  std::printf("%-24s %-6s %-5s %6d %5d %10.2f %10.2f %10.1f  %s\n", r.model.c_str(), r.mode.c_str(),
              r.precision.c_str(), r.batch, r.input_size, r.median_ms, r.img_per_s, r.peak_mem_mb, r.note.c_str());
  std::fflush(stdout);
}

void bench_model(const Options& o, const std::string& arch, eng::Device device, app::Precision p,
                 std::vector<Row>& rows) {
  eng::manual_seed(1);
  auto model = models::create_model(model_config(arch, o.input_size));
  const int size = static_cast<int>(model->config().input_size);
  model->to(device);
  const bool cpu = device.is_cpu();
  app::PrecisionScope scope(p, device);
  eng::Generator gen(7);

  if (std::find(o.modes.begin(), o.modes.end(), "train") != o.modes.end()) {
    const int recipe = recipe_batch(arch);
    const int batch = o.batch > 0 ? o.batch : cpu ? std::min(recipe, 4) : recipe;
    std::string note = batch == recipe ? "recipe batch" : "recipe batch is " + std::to_string(recipe);
    model->train();
    eng::optim::SGDOptions so;
    so.lr = 1e-4;  // small: random inputs, the step must stay finite over the repetitions
    so.momentum = 0.9;
    so.weight_decay = 5e-4;
    eng::optim::SGD opt(model->named_trainable_parameters(), so);
    const eng::Tensor x = eng::randn({batch, 3, size, size}, gen).to(device);
    const models::Targets t = synthetic_targets(batch, size, device);
    reset_peak(device);
    double last_loss = 0;
    const auto ms = time_reps(o.warmup, o.reps, [&] {
      opt.zero_grad();
      model->begin_step(1);  // the same samples every repetition (two-stage models)
      models::LossParts parts = model->loss(models::forward_heads_f32(*model, x), t);
      parts.total.backward();
      opt.step();
      last_loss = parts.total.item();  // the host read ends the step (a sync on CUDA)
    });
    ENGINE_CHECK(std::isfinite(last_loss), arch, ": the training loss became ", last_loss);
    rows.push_back(make_row(o, arch, "train", p, batch, size, ms, peak_mb(device), note));
    print_row(rows.back());
  }
  if (std::find(o.modes.begin(), o.modes.end(), "infer") != o.modes.end()) {
    model->eval();
    eng::NoGradGuard no_grad;
    const int big = o.infer_batch > 0 ? o.infer_batch : cpu ? 4 : 32;
    std::vector<int> batches = {1};
    if (big != 1) batches.push_back(big);
    for (int batch : batches) {
      const eng::Tensor x = eng::randn({batch, 3, size, size}, gen).to(device);
      reset_peak(device);
      int64_t kept = 0;
      const auto ms = time_reps(o.warmup, o.reps, [&] {
        eng::det::Detections d = model->postprocess(models::forward_heads_f32(*model, x));
        kept = 0;
        for (int64_t c : d.counts.to_vector<int64_t>()) kept += c;  // detections to the host
      });
      std::string note = batch == 1 ? "latency" : "throughput";
      if (batch != 1 && batch != 32) note += " (32 on a GPU)";
      rows.push_back(make_row(o, arch, "infer", p, batch, size, ms, peak_mb(device), note));
      rows.back().extra["detections_last_rep"] = kept;
      print_row(rows.back());
    }
  }
}

// The input pipeline alone, on the calling thread (one core).
void bench_loader(const Options& o, std::vector<Row>& rows) {
  const data::Dataset ds = data::load_dataset(o.loader_dir, o.split, "", "");
  ENGINE_CHECK(!ds.samples.empty(), o.loader_dir, ": no images");
  data::LoaderOptions lo;
  lo.batch_size = 1;
  lo.workers = o.workers;
  lo.seed = 1;
  const int size = o.input_size > 0 ? o.input_size : 300;
  lo.input_sizes = {size};
  lo.mean = {123.675, 116.28, 103.53};
  lo.std = {58.395, 57.12, 57.375};
  lo.augment.fill = lo.mean;
  data::Loader loader(ds, lo);
  data::Batch b;
  const int warm = std::min<int>(4, static_cast<int>(ds.samples.size()));
  for (int i = 0; i < warm; ++i) loader.next(b);
  int images = 0;
  const auto t = Clock::now();
  while (images < o.loader_images) {
    loader.next(b);
    images += static_cast<int>(b.size());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t).count();
  ENGINE_CHECK(loader.bad_images() == 0, o.loader_dir, ": ", loader.bad_images(), " images failed to decode");
  Row r;
  r.model = "loader";
  r.mode = "loader";
  r.precision = "-";
  r.device = "cpu";
  r.batch = 1;
  const int cores = std::max(1, o.workers);  // workers = 0: the calling thread does the work
  r.threads = cores;
  r.input_size = size;
  r.reps = images;
  r.median_ms = secs * 1000.0 / images;  // mean ms per image
  r.img_per_s = images / secs;
  r.extra["img_per_s_per_core"] = r.img_per_s / cores;
  r.extra["workers"] = o.workers;
  r.peak_mem_mb = 0;
  r.note = "decode + SSD augmentation + resize + normalise, " + std::to_string(cores) +
           " core(s); per core x 16 cores (extrapolated): " + std::to_string(static_cast<int>(r.img_per_s / cores * 16)) +
           " img/s";
  r.extra["img_per_s_16_cores_extrapolated"] = r.img_per_s / cores * 16;
  r.extra["dataset_images"] = ds.samples.size();
  rows.push_back(r);
  print_row(r);
}

void write_json(const std::string& path, const std::vector<Row>& rows) {
  nlohmann::json out = {{"rows", nlohmann::json::array()}};
  for (const Row& r : rows) {
    nlohmann::json j = {{"model", r.model},         {"mode", r.mode},           {"batch", r.batch},
                        {"precision", r.precision}, {"device", r.device},       {"threads", r.threads},
                        {"input_size", r.input_size}, {"median_ms", r.median_ms}, {"img_per_s", r.img_per_s},
                        {"peak_mem_mb", r.peak_mem_mb}, {"reps", r.reps},       {"note", r.note},
                        {"impl", "ours"}, {"peak_mem_kind", "allocator peak"}};
    j.update(r.extra);
    out["rows"].push_back(j);
  }
  std::ofstream f(path);
  ENGINE_CHECK(f.good(), path, ": cannot write");
  f << out.dump(1) << "\n";
  ENGINE_CHECK(f.good(), path, ": write failed");
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads and their waiting, OpenBLAS single-threaded (engine/cpu_threads.h).
  if (!eng::init_cpu_threads(argc, argv, "bench_models")) return 1;
  CLI::App cli{"bench_models: end-to-end training / inference timings of the detectors, and of the loader"};
  Options o;
  std::string models_flag, modes_flag;
  cli.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  cli.add_option("--model", models_flag, "comma-separated: tiny_ssd, ssd300_vgg16, ssd512_vgg16, retinanet_resnet50_fpn (default: all)");
  cli.add_option("--precision", o.precision, "fp32, tf32 or bf16 (default: bf16 on cuda, fp32 on cpu)");
  cli.add_option("--mode", modes_flag, "train, infer or both (default train,infer)");
  cli.add_option("--reps", o.reps, "timed repetitions per row")->capture_default_str();
  cli.add_option("--warmup", o.warmup, "untimed repetitions before them")->capture_default_str();
  cli.add_option("--batch", o.batch, "training batch (default: the recipe's; 4 on the cpu)");
  cli.add_option("--infer-batch", o.infer_batch, "inference throughput batch (default 32; 4 on the cpu)");
  cli.add_option("--input-size", o.input_size, "input side (default: the architecture's; loader: 300)");
  cli.add_option("--json", o.json, "write the rows as JSON {\"rows\": [...]}");
  cli.add_option("--loader", o.loader_dir, "time the loader alone on this VOC folder instead of the models");
  cli.add_option("--split", o.split, "VOC split of --loader")->capture_default_str();
  cli.add_option("--loader-images", o.loader_images, "images decoded and augmented by --loader")->capture_default_str();
  cli.add_option("--workers", o.workers, "loader threads of --loader (0: the calling thread)")->capture_default_str();
  // Every number checked on its text before conversion, the fixed sets by name
  // (common/config_check.h).
  app::apply_rules(cli, app::bench_models_rules());
  cli.get_option("--device")->check(CLI::IsMember({"cpu", "cuda"}));
  cli.get_option("--precision")->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.exit(e);
    std::cerr << app::cli_error_line("bench_models", e) << " (see --help)\n";
    return 1;
  }
  try {
    ENGINE_CHECK(o.reps >= 1, "--reps must be at least 1, got ", o.reps);
    ENGINE_CHECK(o.warmup >= 0, "--warmup must be at least 0, got ", o.warmup);
    ENGINE_CHECK(o.batch >= 0 && o.infer_batch >= 0, "--batch and --infer-batch must be positive");
    ENGINE_CHECK(o.input_size >= 0, "--input-size must be positive, got ", o.input_size);
    ENGINE_CHECK(o.loader_images >= 1, "--loader-images must be at least 1, got ", o.loader_images);
    ENGINE_CHECK(o.workers >= 0, "--workers must be at least 0, got ", o.workers);
    std::vector<Row> rows;
    if (!o.loader_dir.empty()) {
      print_header();
      bench_loader(o, rows);
    } else {
      o.models = models_flag.empty() ? models::model_names() : split_list(models_flag, "--model");
      const auto known = models::model_names();
      for (const auto& m : o.models)
        ENGINE_CHECK(std::find(known.begin(), known.end(), m) != known.end(), "--model: unknown model '", m,
                     "' (known: tiny_ssd, ssd300_vgg16, ssd512_vgg16, retinanet_resnet50_fpn)");
      if (!modes_flag.empty()) o.modes = split_list(modes_flag, "--mode");
      for (const auto& m : o.modes) ENGINE_CHECK(m == "train" || m == "infer", "--mode: '", m, "' is not train or infer");
      ENGINE_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '", o.device, "'");
      ENGINE_CHECK(o.device == "cpu" || eng::cuda::available(), "--device cuda: no CUDA device is available");
      const eng::Device device = o.device == "cuda" ? eng::Device::cuda() : eng::Device::cpu();
      const app::Precision p = app::resolve_precision(o.precision, device);
      print_header();
      for (const auto& m : o.models) bench_model(o, m, device, p, rows);
    }
    if (!o.json.empty()) write_json(o.json, rows);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_models: " << app::one_line(e.what()) << "\n";
    return 1;
  }
}
