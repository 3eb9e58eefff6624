#include "common/trainer.h"

#include "common/anchor_report.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>

#include "common/batch_dump.h"
#include "common/batch_upload.h"
#include "common/train_targets.h"
#include "common/checkpoint.h"
#include "common/config_check.h"
#include "common/dist_eval.h"
#include "common/distributed.h"
#include "common/graphed_train_step.h"
#include "common/loss_meter.h"
#include "common/step_profile.h"
#include "common/train_progress.h"
#include "common/precision.h"
#include "common/report_pr.h"
#include "common/report_run.h"
#include "engine/cuda_context.h"
#include "common/inference.h"
#include "common/run_log.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/shard.h"
#include "engine/allocator.h"
#include "engine/dist/communicator.h"
#include "engine/dist/grad_reducer.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/io/safetensors.h"
#include "models/backbone_weights.h"
#include "models/weights.h"

namespace app {

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

// Installs the SIGINT handler for the lifetime of a run and restores the previous one.
struct SigintScope {
  using Handler = void (*)(int);
  Handler previous;
  SigintScope() : previous(std::signal(SIGINT, on_sigint)) { g_interrupted = false; }
  ~SigintScope() { std::signal(SIGINT, previous); }
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

data::Dataset load_and_report(RunLog& log, const char* what, const std::string& path, const std::string& split,
                              const std::string& classes, const std::string& images) {
  data::Dataset d = data::load_dataset(path, split, data::is_coco_path(path) ? "" : classes, images);
  log.say(std::string(what) + ": " + data::dataset_source(path, split, data::is_coco_path(path) ? "" : classes, images));
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < d.warnings.size() && i < kShown; ++i) log.say("warning: " + d.warnings[i]);
  if (d.warnings.size() > kShown) log.say("warning: ... and " + std::to_string(d.warnings.size() - kShown) + " more");
  log.say(data::dataset_summary(d));
  return d;
}

// The samples that have at least one training target (not difficult, not crowd).
data::Dataset trainable(const data::Dataset& d) {
  data::Dataset out = d;
  out.samples.clear();
  for (const data::Sample& s : d.samples) {
    for (const data::Object& o : s.objects) {
      if (!o.difficult && !o.iscrowd) {
        out.samples.push_back(s);
        break;
      }
    }
  }
  return out;
}

// metrics.jsonl's "memory_mb" (kept from the first log format): the run's peak of the bytes
// handed out by the device's allocator (CUDA: the caching allocator's peak allocated, the
// same value as "mem_peak_mb"; CPU: the engine's CPU allocator, tensors only, not the
// process's resident set "rss_mb").
double memory_mb(eng::Device device) {
  const eng::MemoryStats s = device.is_cuda() ? eng::cuda::alloc::stats() : eng::cpu_alloc::stats();
  return static_cast<double>(s.peak_allocated) / (1 << 20);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

eng::Device parse_device(const std::string& name) {
  if (name == "cpu") return eng::Device::cpu();
  ENGINE_CHECK(name == "cuda", "--device must be cpu or cuda, got '", name, "'");
  ENGINE_CHECK(eng::cuda::available(), "--device cuda: no CUDA device is available");
  return eng::Device::cuda();
}

// Everything one run holds; train() drives it.
class Run {
 public:
  Run(const TrainConfig& c, Distributed& dist);
  int execute();

 private:
  void setup_data();
  void setup_model();
  void evaluate_now();
  // evaluate_now() and the save after it; its wall time goes to the ETA (not the rate).
  void evaluate_and_save();
  // The text after the losses on the progress line and the matching metrics.jsonl fields.
  std::string interval_report(nlohmann::json& line, int64_t total, double train_seconds, double wait_seconds,
                              double elapsed);
  void save_last();
  bool read_losses();
  void restore_base_size() {
    if (model_->config().input_size != base_size_) model_->set_input_size(base_size_);
  }
  void setup_data_parallel();
  void agree_to_stop(bool& time_up, bool& interrupted);

  const TrainConfig& c_;
  Distributed& dist_;
  std::unique_ptr<eng::dist::GradReducer> reducer_;  // several ranks: gradient buckets
  bool broadcast_buffers_ = false;  // several ranks, trained BatchNorm without --sync-bn
  FaultInjection fault_ = fault_from_env();  // tests only
  eng::Device device_;
  Precision precision_;
  std::unique_ptr<PrecisionScope> precision_scope_;  // TF32 / autocast / determinism for the run
  std::unique_ptr<RunLog> log_;
  data::Dataset train_set_, val_set_;
  bool have_val_ = false;
  ClassList classes_;
  std::shared_ptr<models::DetectionModel> model_;
  std::unique_ptr<eng::optim::SGD> optimizer_;
  std::unique_ptr<eng::optim::LinearWarmup> schedule_;
  TrainState state_;
  int64_t base_size_ = 0;
  int64_t last_eval_iteration_ = -1;
  LossMeter meter_;
  EtaEstimator eta_;                 // rate of the recent log intervals, mean evaluation time
  double interval_eval_seconds_ = 0;  // evaluation time inside the current log interval
  std::unique_ptr<GraphedTrainStep> graphed_;  // --cuda-graph
  std::unique_ptr<BatchDump> dump_ = BatchDump::from_env();  // ENGINE_DUMP_BATCHES (debugging)
  std::filesystem::path out_;
};

Run::Run(const TrainConfig& c, Distributed& dist)
    : c_(c),
      dist_(dist),
      device_(parse_device(c.device)),
      precision_(c.bf16_cpu_twin ? Precision::bf16 : resolve_precision(c.precision, device_)),
      out_(c.out) {
  ENGINE_CHECK(c.batch >= 1, "--batch must be at least 1");
  ENGINE_CHECK(!c.cuda_graph || device_.is_cuda(),
               "--cuda-graph needs --device cuda (a CUDA graph replays device work; the CPU has none to capture)");
  ENGINE_CHECK(!c.cuda_graph || c.max_gt >= 1, "--max-gt must be at least 1, got ", c.max_gt);
  ENGINE_CHECK(c.iters > 0 || c.epochs > 0 || c.time_limit > 0, "give --iters N, --epochs N or --time-limit SECONDS");
  ENGINE_CHECK(!c.data.empty(), "--data is required");
  ENGINE_CHECK(!c.cuda_graph || (!dist.active() && c.accum == 1),
               "--cuda-graph does not combine with several ranks or --accum yet (run the eager step)");
  ENGINE_CHECK(c.accum >= 1, "--accum must be at least 1, got ", c.accum);
  ENGINE_CHECK(!dump_ || (!c.cuda_graph && !dist.active() && c.accum == 1),
               "ENGINE_DUMP_BATCHES: eager single-process steps only (no --cuda-graph, several ranks or --accum)");
  if (!dist.root()) {
    // Rank 0 owns the outputs: metrics.jsonl, the progress bar, the checkpoints.
    log_ = std::make_unique<RunLog>(RunLog::silent("ssd_train: " + dist.who()));
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_, ec);
  ENGINE_CHECK(!ec && std::filesystem::is_directory(out_), c.out, ": cannot create the output folder");
  // A resumed run continues the metrics file; a fresh run starts it anew.
  log_ = std::make_unique<RunLog>((out_ / "metrics.jsonl").string(), ::isatty(1) != 0, !c.resume.empty());
}

void Run::setup_data() {
  data::Dataset all = load_and_report(*log_, "train", c_.data, c_.split, c_.classes, c_.images);
  train_set_ = trainable(all);
  if (train_set_.samples.size() < all.samples.size())
    log_->say("train: " + std::to_string(all.samples.size() - train_set_.samples.size()) +
              " images without a training object left out");
  ENGINE_CHECK(!train_set_.samples.empty(), c_.data, ": no image with a training object");
  classes_ = {train_set_.class_names, train_set_.category_ids};
  if (!c_.val.empty()) {
    val_set_ = load_and_report(*log_, "val", c_.val, c_.val_split, c_.classes, c_.val_images);
    ENGINE_CHECK(val_set_.class_names == train_set_.class_names, c_.val,
                 ": its classes differ from the training set's");
    have_val_ = true;
  }
}

void Run::setup_model() {
  models::ModelConfig mc;
  if (!c_.resume.empty()) {
    mc = models::read_model_config(c_.resume);
    ENGINE_CHECK(c_.arch.empty() || c_.arch == mc.arch, c_.resume, ": checkpoint of '", mc.arch, "', --arch says '",
                 c_.arch, "'");
    const ClassList saved = read_class_list(c_.resume);
    ENGINE_CHECK(saved.names == classes_.names, c_.resume, ": checkpoint classes differ from the dataset's");
    ENGINE_CHECK(c_.anchor_preset.empty() && c_.anchor_sizes.empty(),
                 "--anchor-preset / --anchor-sizes: not with --resume (the checkpoint's anchors are used)");
    ENGINE_CHECK(c_.matcher.empty() || c_.matcher == mc.matcher,
                 "--matcher: not with --resume (the checkpoint's matcher is used)");
    ENGINE_CHECK(c_.trainable_backbone_layers == -1 && c_.rpn_top_n_train == 0 && c_.rpn_top_n_test == 0 &&
                     c_.backbone_norm.empty() && c_.min_size == 0 && c_.max_size == 0,
                 "--trainable-backbone-layers / --rpn-top-n-train / --rpn-top-n-test / --backbone-norm / --min-size / "
                 "--max-size: not with --resume (the checkpoint's are used)");
  } else {
    ENGINE_CHECK(!c_.arch.empty(), "--arch is required (one of ", [] {
                   std::string names;
                   for (const std::string& n : models::model_names()) names += (names.empty() ? "" : ", ") + n;
                   return names;
                 }(), ")");
    mc.arch = c_.arch;
    mc.num_classes = static_cast<int64_t>(classes_.names.size()) + 1;
    apply_anchor_flags(mc, c_.anchor_preset, c_.anchor_sizes, data::is_coco_path(c_.data) ? "coco" : "voc");
    mc.input_size = c_.input_size;
    mc.matcher = c_.matcher;
    mc.trainable_backbone_layers = c_.trainable_backbone_layers;
    mc.rpn_top_n_train = c_.rpn_top_n_train;
    mc.rpn_top_n_test = c_.rpn_top_n_test;
    mc.backbone_norm = c_.backbone_norm;
    mc.min_size = c_.min_size;
    mc.max_size = c_.max_size;
    // SSDlite as torchvision builds it: the full MobileNetV3 tail with ImageNet backbone
    // weights, else the reduced one; --init takes the structure its file records.
    if (!c_.backbone.empty()) mc.full_tail = mc.arch == "ssdlite320_mobilenet_v3_large";
    if (!c_.init.empty() && mc.arch == "ssdlite320_mobilenet_v3_large")
      mc.full_tail = mc.full_tail || models::read_full_tail(eng::io::load_safetensors(c_.init).metadata, c_.init);
  }
  ENGINE_CHECK(c_.resume.empty() || c_.backbone.empty(),
               "--backbone: not with --resume (the checkpoint holds the backbone it trained)");
  eng::manual_seed(c_.seed);
  model_ = models::create_model(mc);
  base_size_ = model_->config().input_size;
  if (!c_.init.empty()) {
    models::load_model_weights(*model_, c_.init);
    log_->say("init: weights from " + c_.init);
  }
  if (!c_.backbone.empty()) {
    const std::optional<models::BackboneLayout> layout = models::imagenet_backbone_layout(mc.arch);
    ENGINE_CHECK(layout.has_value(), "--backbone: ", mc.arch, " has no ImageNet backbone to load");
    log_->say("backbone: " + c_.backbone + " (" + layout->name + "): " +
              models::load_backbone_weights(*model_, c_.backbone, *layout).summary());
  }
  model_->to(device_);
  model_->train();
  precision_scope_ = std::make_unique<PrecisionScope>(precision_, device_, c_.deterministic, c_.bf16_cpu_twin);

  eng::optim::SGDOptions o;
  o.lr = c_.lr > 0 ? c_.lr : default_lr(mc.arch);
  o.momentum = c_.momentum;
  o.weight_decay = c_.wd;
  optimizer_ = std::make_unique<eng::optim::SGD>(model_->named_trainable_parameters(), o);
  const int64_t warmup = c_.warmup >= 0 ? c_.warmup : default_warmup(mc.arch);
  schedule_ = std::make_unique<eng::optim::LinearWarmup>(eng::optim::MultiStep(o.lr, c_.steps, 0.1), warmup, 0.001);

  state_.seed = c_.seed;
  if (!c_.resume.empty()) {
    state_ = load_checkpoint(c_.resume, *model_, *optimizer_);
    if (state_.seed != c_.seed)
      log_->say("resume: using the checkpoint's seed " + std::to_string(state_.seed) + " (not --seed " +
                std::to_string(c_.seed) + ")");
    log_->say("resume: " + c_.resume + " at iteration " + std::to_string(state_.iteration));
    if (state_.precision != precision_name(precision_))
      log_->say("resume: the checkpoint ran in " + state_.precision + ", this run continues in " +
                precision_name(precision_));
  }
  state_.precision = precision_name(precision_);
  setup_data_parallel();
  log_->say("model: " + mc.arch + ", " + std::to_string(model_->num_parameters()) + " parameters, input " +
            std::to_string(base_size_) + ", " + std::to_string(classes_.names.size()) + " classes, on " + c_.device + " in " +
            precision_name(precision_) + (c_.deterministic ? " (deterministic)" : ""));
  // How well the anchors fit the training boxes, with a warning when the matcher cannot reach most.
  for (const std::string& line : anchor_fit_lines(train_set_, *model_, c_.data)) log_->say(line);
}

// Several ranks: the model becomes one replica of a data-parallel run, as torch's DDP does it.
// Rank 0's parameters and buffers go to every rank (a fresh run starts equal on every rank
// anyway: same seed; a resumed one read the same file), the losses' normalisers and, with
// --sync-bn, the BatchNorm statistics reduce through eng::dist::current(), and the gradients
// are summed in buckets while backward runs. Summed, not averaged: each rank's loss is
// already divided by the global positives (or images), so the sum is the single process's
// gradient on the global batch.
void Run::setup_data_parallel() {
  if (!dist_.active()) return;
  eng::dist::Communicator& comm = *dist_.comm();
  eng::dist::set_current(&comm);
  bool trained_bn = false;
  for (auto& [name, m] : model_->named_modules()) trained_bn |= m->type_name() == "BatchNorm2d";
  if (c_.sync_bn) {
    const int n = eng::dist::convert_sync_batchnorm(*model_);
    log_->say("sync-bn: " + std::to_string(n) + " BatchNorm layers compute their statistics over the global batch");
  } else if (trained_bn) {
    // As DDP's broadcast_buffers: rank 0's running statistics are copied to every rank before
    // each forward, so that evaluation and checkpoints see one model.
    broadcast_buffers_ = true;
  }
  eng::dist::broadcast_module(comm, *model_);
  reducer_ = std::make_unique<eng::dist::GradReducer>(comm, model_->named_trainable_parameters());
  meter_.set_communicator(&comm);
  const int64_t global = static_cast<int64_t>(c_.batch) * dist_.size() * c_.accum;
  nlohmann::json line = {{"event", "distributed"},      {"world_size", dist_.size()},
                         {"backend", dist_.backend()},  {"launcher", dist_.launcher()},
                         {"batch_per_rank", c_.batch}, {"accum", c_.accum},
                         {"global_batch", global},     {"sync_bn", c_.sync_bn},
                         {"buckets", reducer_->buckets()}, {"bytes_per_step", reducer_->bytes_per_step()}};
  log_->write(line);
  log_->say("distributed: " + std::to_string(dist_.size()) + " ranks (" + dist_.launcher() + "), backend " +
            dist_.backend() + ", batch " + std::to_string(c_.batch) + " per rank x " + std::to_string(dist_.size()) +
            (c_.accum > 1 ? " x accum " + std::to_string(c_.accum) : std::string()) + " = global batch " +
            std::to_string(global) + "; gradients in " + std::to_string(reducer_->buckets()) + " buckets, " +
            fmt("%.1f", static_cast<double>(reducer_->bytes_per_step()) / (1 << 20)) + " MiB all-reduced per step");
}

// Several ranks must stop at the same iteration: rank 0's clock and SIGINT decide, and the
// decision is broadcast (at log intervals only, where the loop reads the device anyway).
void Run::agree_to_stop(bool& time_up, bool& interrupted) {
  eng::Tensor flags = eng::zeros({2}, eng::TensorOptions(eng::DType::i32));
  flags.data<int32_t>()[0] = time_up ? 1 : 0;
  flags.data<int32_t>()[1] = interrupted ? 1 : 0;
  dist_.comm()->broadcast(flags, 0);
  time_up = flags.data<int32_t>()[0] != 0;
  interrupted = flags.data<int32_t>()[1] != 0;
}

void Run::save_last() {
  if (!dist_.root()) return;
  restore_base_size();
  save_checkpoint((out_ / "last.safetensors").string(), *model_, optimizer_.get(), state_, classes_);
}

// Reads the losses summed on the device since the last read (one host sync). A non-finite
// sum stops the run: the message names the iterations the sum covered (the step itself is
// not known: the loop does not wait for the device each step). Called before every log
// line, evaluation and checkpoint, so a diverged model is never evaluated or saved.
bool Run::read_losses() {
  if (graphed_) graphed_->flush(meter_);
  const LossMeter::Check r = meter_.check();
  if (r.finite) return true;
  const std::string what = std::isnan(r.loss) ? "NaN" : "infinite";
  const std::string where = r.first_iteration == r.last_iteration
                                ? "at iteration " + std::to_string(r.last_iteration)
                                : "in iterations " + std::to_string(r.first_iteration) + "-" +
                                      std::to_string(r.last_iteration);
  log_->write({{"iteration", r.last_iteration},
               {"first_iteration", r.first_iteration},
               {"event", "non-finite loss"},
               {"loss", std::to_string(r.loss)}});
  const std::string whose = r.rank >= 0 ? " on rank " + std::to_string(r.rank) : std::string();
  log_->say("ssd_train: the loss is " + what + whose + " " + where +
            (dist_.active() ? "; stopping every rank" : "; stopping") + " (the last checkpoint, if any, is untouched)");
  return false;
}

void Run::evaluate_now() {
  restore_base_size();
  InferenceOptions io;
  EvalRun r = dist_.active()
                  ? evaluate_model_sharded(*model_, val_set_, device_, io, c_.eval_batch, c_.workers, *dist_.comm())
                  : evaluate_model(*model_, val_set_, device_, io, c_.eval_batch, c_.workers);
  for (const auto& w : r.warnings) log_->warn("warning: " + w);
  const data::EvalResult& m = r.result;
  last_eval_iteration_ = state_.iteration;
  // The metric the run selects best.safetensors by: COCO AP on a COCO validation set, VOC07
  // mAP otherwise. The best so far lives in the training state (checkpoint metadata
  // best_metric / best_iteration), so a resumed run continues from the checkpoint's best.
  const bool coco = data::is_coco_path(c_.val);
  const double metric = coco ? m.map_coco : m.map_voc07;
  const bool improved = metric > state_.best_metric;
  if (improved) {
    state_.best_metric = metric;
    state_.best_iteration = state_.iteration;
  }
  nlohmann::json line = {{"iteration", state_.iteration}, {"map_voc07", m.map_voc07}, {"map_voc_area", m.map_voc_area},
                         {"map_coco", m.map_coco},         {"ap50", m.ap50},           {"ap75", m.ap75},
                         {"eval_images", r.images.size()}, {"eval_seconds", r.seconds}};
  if (state_.best_iteration >= 0) {
    line["best_map"] = state_.best_metric;
    line["best_iteration"] = state_.best_iteration;
    line["best_metric"] = coco ? "map_coco" : "map_voc07";
  }
  line["per_class"] = report::per_class_summary(r, val_set_);  // AP and PR curve per class (ssd_report)
  log_->write(line);
  log_->say("eval at iteration " + std::to_string(state_.iteration) + ": mAP VOC07 " + fmt("%.4f", m.map_voc07) +
            "  VOC area " + fmt("%.4f", m.map_voc_area) + "  COCO " + fmt("%.4f", m.map_coco) + "  AP50 " +
            fmt("%.4f", m.ap50) + "  (" + fmt("%.1f", r.seconds) + " s)" +
            (state_.best_iteration < 0 ? std::string()
                                       : "  best " + std::string(coco ? "COCO AP " : "mAP VOC07 ") +
                                             fmt("%.4f", state_.best_metric) + " at iteration " +
                                             std::to_string(state_.best_iteration) + (improved ? " (new)" : "")));
  if (improved && dist_.root())
    save_checkpoint((out_ / "best.safetensors").string(), *model_, nullptr, state_, classes_);
}

void Run::evaluate_and_save() {
  const auto t0 = Clock::now();
  evaluate_now();
  save_last();
  const double s = seconds_since(t0);
  eta_.add_evaluation(s);
  interval_eval_seconds_ += s;
}

std::string Run::interval_report(nlohmann::json& line, int64_t total, double train_seconds, double wait_seconds,
                                 double elapsed) {
  std::string text;
  // The share of the interval's training time the loop waited in the loader's next() (host
  // wall clock; no device sync is added: on CUDA the host runs ahead of the device until the
  // loss read at the log line, so a device-bound run waits in its launches, not here).
  const double wait = train_seconds > 0 ? std::min(1.0, std::max(0.0, wait_seconds / train_seconds)) : 0.0;
  line["data_wait"] = wait;
  text += "  data " + fmt("%.0f", 100 * wait) + "%";
  if (device_.is_cuda()) {
    const DeviceMemory d = cuda_memory();
    line["mem_allocated_mb"] = d.allocated_mb;
    line["mem_reserved_mb"] = d.reserved_mb;
    line["mem_peak_mb"] = d.peak_mb;
    text += "  mem " + fmt("%.0f", d.allocated_mb) + "/" + fmt("%.0f", d.reserved_mb) + " MB (peak " +
            fmt("%.0f", d.peak_mb) + ")";
  }
  const ProcessMemory p = process_memory();
  line["rss_mb"] = p.rss_mb;
  line["rss_peak_mb"] = p.rss_peak_mb;
  if (!device_.is_cuda()) text += "  rss " + fmt("%.0f", p.rss_mb) + " MB (peak " + fmt("%.0f", p.rss_peak_mb) + ")";
  if (state_.best_iteration >= 0)
    text += "  best " + fmt("%.4f", state_.best_metric) + " @" + std::to_string(state_.best_iteration);
  const double eta = run_eta(eta_, state_.iteration, total, c_.time_limit, elapsed, c_.eval_every, have_val_);
  if (std::isfinite(eta)) {
    line["eta_s"] = eta;
    text += "  ETA " + format_hms(eta);
  }
  return text;
}

int Run::execute() {
  const auto start = Clock::now();
  // The allocator's peak ("memory_mb", "mem_peak_mb") is this run's, not the process's.
  if (device_.is_cuda()) {
    eng::cuda::alloc::reset_peak();
  } else {
    eng::cpu_alloc::reset_peak();
  }
  setup_data();
  setup_model();
  // RUN_DIR/report.html (ssd_report's page) whenever this function returns: done, SIGINT, NaN stop.
  const report::ReportAtExit report_at_exit(c_, model_, have_val_ ? &val_set_ : nullptr, device_,
                                            dist_.root(), [this](const std::string& s) { log_->say(s); });

  data::LoaderOptions lo;
  // Several ranks: the loader deals global batches of batch x world images, and this rank
  // builds its slice of each (data/loader.h): together the ranks see exactly the batches of
  // one process with --batch batch x world.
  const int64_t global_batch = static_cast<int64_t>(c_.batch) * dist_.size();
  lo.batch_size = static_cast<int>(global_batch);
  lo.shard_rank = dist_.rank();
  lo.shard_count = dist_.size();
  lo.workers = c_.workers;
  lo.seed = state_.seed;
  lo.start_batch = state_.next_batch;
  if (state_.global_batch > 0 && state_.global_batch != global_batch) {
    // Resumed with another global batch (another world size or --batch): continue from the
    // same place in the same epoch, at the next batch boundary of the new size.
    lo.start_batch = data::resume_batch(state_.next_batch, state_.global_batch, global_batch,
                                        static_cast<int64_t>(train_set_.samples.size()));
    log_->say("resume: the global batch was " + std::to_string(state_.global_batch) + ", now " +
              std::to_string(global_batch) + ": batch " + std::to_string(state_.next_batch) + " of the old size is batch " +
              std::to_string(lo.start_batch) + " of the new one");
  }
  state_.global_batch = global_batch;
  lo.input_sizes = c_.multiscale.empty() ? std::vector<int>{static_cast<int>(base_size_)} : c_.multiscale;
  lo.mean = model_->pixel_mean();
  lo.std = model_->pixel_std();
  lo.keep_aspect = model_->keep_aspect_ratio();
  lo.aspect_limits = model_->aspect_limits();
  lo.augment.fill = model_->pixel_mean();
  lo.augment.crop_every_box = c_.crop_rule == "every";
  if (!c_.augment) lo.augment.photometric = lo.augment.expand = lo.augment.crop = lo.augment.flip = false;
  lo.pinned = device_.is_cuda();
  // By default on CUDA the images travel as uint8 (4x fewer bytes) on the copy stream and
  // are normalised on the device (app::batch_images_on); u8 on the CPU normalises there.
  ENGINE_CHECK(c_.image_transfer == "auto" || c_.image_transfer == "u8" || c_.image_transfer == "f32",
               "--image-transfer must be auto, u8 or f32, got '", c_.image_transfer, "'");
  lo.uint8_images = c_.image_transfer == "u8" || (c_.image_transfer == "auto" && device_.is_cuda());
  data::Loader loader(train_set_, lo);
  if (c_.cuda_graph) {
    ENGINE_CHECK(model_->graph_capturable(), "--cuda-graph: ", model_->config().arch,
                 " samples its training RoIs on the host; its step cannot be captured (run without --cuda-graph)");
    check_max_gt(train_set_, c_.max_gt);
    graphed_ = std::make_unique<GraphedTrainStep>(*model_, *optimizer_, c_.clip_grad_norm);
    log_->say("cuda graphs: the step of each input size is captured after eager warm-up steps and replayed; "
              "targets padded to --max-gt " + std::to_string(c_.max_gt));
  }

  const int64_t total = c_.iters > 0    ? c_.iters
                        : c_.epochs > 0 ? std::max<int64_t>(1, c_.epochs * loader.batches_per_epoch() / c_.accum)
                                        : std::numeric_limits<int64_t>::max();
  log_->say("training: " + (total == std::numeric_limits<int64_t>::max() ? std::string("until the time limit")
                                                                           : std::to_string(total) + " iterations") +
            ", batch " + std::to_string(c_.batch) +
            (dist_.active() || c_.accum > 1
                 ? " per rank (global " + std::to_string(global_batch * c_.accum) + ")"
                 : std::string()) +
            ", " + std::to_string(loader.batches_per_epoch()) + " batches per epoch, lr " +
            fmt("%g", optimizer_->options().lr));

  if (dump_ && state_.iteration == 0) dump_->write_weights(0, *model_, state_, classes_);
  SigintScope sigint;
  int64_t interval_images = 0, steps_run = 0;
  int64_t interval_first = state_.iteration;  // the iteration the log interval starts after
  double interval_wait = 0;                   // seconds spent in loader.next() in the interval
  auto interval_start = Clock::now();
  bool stopped_by_time = false;
  // Several ranks decide to stop together (agree_to_stop, at log intervals); one rank alone
  // acts on its own clock and SIGINT at every step.
  bool stop_time = false, stop_interrupt = false;
  while (state_.iteration < total) {
    if (!dist_.active()) {
      stop_interrupt = g_interrupted;
      stop_time = c_.time_limit > 0 && seconds_since(start) >= c_.time_limit;
    }
    if (stop_interrupt) {
      if (!read_losses()) return 1;
      save_last();
      log_->say("interrupted at iteration " + std::to_string(state_.iteration) + ": saved " +
                (out_ / "last.safetensors").string());
      return 130;
    }
    if (stop_time) {
      log_->say("time limit of " + fmt("%g", c_.time_limit) + " s reached at iteration " +
                std::to_string(state_.iteration));
      stopped_by_time = true;
      break;
    }
    // The step: no host synchronisation in it (targets and images come from pinned memory,
    // the losses are summed on the device); --profile N measures the one after N steps.
    std::unique_ptr<StepProfiler> prof;
    if (c_.profile >= 0 && steps_run == c_.profile) {
      prof = std::make_unique<StepProfiler>(device_.is_cuda());
      prof->begin();
    }
    data::Batch batch;
    // The next batch (this rank's shard of it), on the model's input size.
    auto next_batch = [&] {
      const auto wait_start = Clock::now();
      loader.next(batch);
      interval_wait += seconds_since(wait_start);
      for (const auto& w : loader.take_warnings()) log_->warn("warning: " + w);
      ENGINE_CHECK(batch.size() > 0, "batch ", batch.number, ": every image of this rank's shard failed to load");
      if (batch.input_size != model_->config().input_size) model_->set_input_size(batch.input_size);
      interval_images += batch.size();
    };
    next_batch();
    if (graphed_) {
      // The whole step replays from a graph (forward, loss, backward and optimizer in one
      // launch: --profile counts it all in the forward phase). Images and padded targets go
      // to the graph's static inputs from pinned memory inside step().
      // uint8 images are uploaded on the copy stream and normalised on the compute stream
      // after the copy's event, before (and outside) the captured step.
      const eng::Tensor x = batch_images_on(batch, device_, lo.mean, lo.std);
      const models::Targets targets = host_targets(batch, device_, &train_set_, c_.max_gt);
      if (prof) prof->mark(Phase::data);
      optimizer_->set_lr(schedule_->lr_at(state_.iteration));
      graphed_->step(x, targets, state_.iteration + 1);
      if (prof) {
        prof->mark(Phase::forward);
        prof->mark(Phase::loss);
        prof->mark(Phase::backward);
        prof->mark(Phase::optimizer);
      }
    } else {
      optimizer_->set_lr(schedule_->lr_at(state_.iteration));
      optimizer_->zero_grad();
      struct {
        eng::Tensor x;
        models::Targets targets;
        models::HeadOutputs heads;
        models::LossParts parts;
      } dumped;  // ENGINE_DUMP_BATCHES: this step's inputs and outputs
      // --accum K: K batches, their gradients summed (each loss divided by K), one step.
      // Several ranks: the gradient buckets are all-reduced during the last batch's backward.
      for (int micro = 0; micro < c_.accum; ++micro) {
        if (micro > 0) next_batch();
        const bool last = micro == c_.accum - 1;
        const eng::Tensor x = batch_images_on(batch, device_, lo.mean, lo.std);
        const models::Targets targets = make_targets(batch, device_);
        if (prof && last) prof->mark(Phase::data);
        if (broadcast_buffers_) {
          eng::NoGradGuard ng;
          for (auto& [name, b] : model_->named_buffers()) dist_.comm()->broadcast(b, 0);
        }
        if (reducer_) reducer_->set_enabled(last);
        // Models that sample in their loss (two-stage: the RPN and RoI samplers) draw from a
        // seed of (run seed, iteration, micro-batch, rank): a resumed run draws the same.
        model_->begin_step(step_seed(state_.seed, state_.iteration, micro, dist_.rank()));
        models::LossParts parts;
        {
          const models::HeadOutputs heads = models::forward_heads_f32(*model_, x);
          if (prof && last) prof->mark(Phase::forward);
          parts = model_->loss(heads, targets);
          if (dump_ && dump_->wants(state_.iteration + 1)) dumped = {x, targets, heads, parts};
        }
        if (fault_.hits(dist_.rank(), state_.iteration + 1, "nan")) parts.total = eng::mul_scalar(parts.total, NAN);
        if (fault_.hits(dist_.rank(), state_.iteration + 1, "throw")) ENGINE_FAIL("injected fault (ENGINE_TEST_DIST_FAULT)");
        meter_.add(parts, state_.iteration + 1);
        if (prof && last) prof->mark(Phase::loss);
        if (c_.accum > 1) {
          eng::mul_scalar(parts.total, 1.0 / c_.accum).backward();
        } else {
          parts.total.backward();
        }
        if (reducer_ && last) reducer_->finish();
      }
      // The global gradient norm (clipped to --clip-grad-norm when given): device ops, no sync.
      const auto& params = optimizer_->parameters();
      const eng::Tensor norm = c_.clip_grad_norm > 0 ? eng::optim::clip_grad_norm_(params, c_.clip_grad_norm)
                                                     : eng::optim::grad_norm(params);
      meter_.add_grad_norm(norm);
      if (dumped.x.defined())
        dump_->write_step(state_.iteration + 1, optimizer_->lr(), dumped.x, dumped.targets, dumped.heads, dumped.parts,
                          norm, model_->cached_anchors(device_));
      if (prof) prof->mark(Phase::backward);
      optimizer_->step();
      if (prof) prof->mark(Phase::optimizer);
    }
    ++state_.iteration;
    ++steps_run;
    if (dump_ && dump_->wants_weights(state_.iteration)) dump_->write_weights(state_.iteration, *model_, state_, classes_);
    if (fault_.hits(dist_.rank(), state_.iteration, "kill")) ::raise(SIGKILL);
    if (fault_.hits(dist_.rank(), state_.iteration, "hang")) ::raise(SIGSTOP);
    state_.next_batch = batch.number + 1;
    if (prof) {
      const StepProfile p = prof->finish();
      log_->write(p.to_json(state_.iteration));
      log_->say(p.str(state_.iteration));
    }

    const bool log_due = state_.iteration % c_.log_every == 0 || state_.iteration == total;
    const bool eval_due = have_val_ && c_.eval_every > 0 && state_.iteration % c_.eval_every == 0 &&
                          state_.iteration < total;
    const bool save_due = c_.save_every > 0 && state_.iteration % c_.save_every == 0;
    // The only host sync of the loop: the losses, before a log line, an evaluation or a save.
    if ((log_due || eval_due || save_due) && !read_losses()) return 1;
    if (log_due) {
      // The interval's training time: its wall time less the evaluations run in it.
      const double secs = std::max(0.0, seconds_since(interval_start) - interval_eval_seconds_);
      eta_.add_interval(state_.iteration - interval_first, secs);
      // Images of the whole global batch per second of training time: every rank's shard is
      // the same size (bad images aside), so this rank's count times the world size.
      const double ips = secs > 0 ? static_cast<double>(interval_images) * dist_.size() / secs : 0;
      const double elapsed = seconds_since(start);
      const LossMeter::Interval m = meter_.take_interval();
      nlohmann::json line = {{"iteration", state_.iteration},
                             {"epoch", batch.epoch},
                             {"loss", m.loss},
                             {"loss_cls", m.cls},
                             {"loss_box", m.box},
                             {"lr", optimizer_->lr()},
                             {"img_per_s", ips},
                             {"memory_mb", memory_mb(device_)},
                             {"input_size", batch.input_size},
                             {"precision", precision_name(precision_)},
                             {"elapsed_s", elapsed}};
      // The largest global gradient norm of the interval's steps (before clipping); null when
      // some step's norm was not finite.
      if (m.has_grad_norm) line["grad_norm_max"] = m.grad_norm_max;
      // The model's named loss parts (Faster R-CNN: loss_objectness, loss_rpn_box_reg,
      // loss_classifier, loss_box_reg), summing to "loss".
      for (const auto& [name, value] : m.components) line[name] = value;
      // data_wait, memory, ETA (and the best mAP on the progress line).
      const std::string more = interval_report(line, total, secs, interval_wait, elapsed);
      log_->write(line);
      log_->progress(state_.iteration, total,
                     "it " + std::to_string(state_.iteration) +
                         (total == std::numeric_limits<int64_t>::max() ? "" : "/" + std::to_string(total)) +
                         "  loss " + fmt("%.4f", m.loss) + " (cls " + fmt("%.4f", m.cls) + ", box " +
                         fmt("%.4f", m.box) + ")  grad norm max " + fmt("%.3g", m.grad_norm_max) + "  lr " +
                         fmt("%.3g", optimizer_->lr()) + "  " + fmt("%.1f", ips) + " img/s" + more);
      interval_images = 0;
      interval_first = state_.iteration;
      interval_wait = 0;
      interval_eval_seconds_ = 0;
      interval_start = Clock::now();
    }
    if (eval_due) {
      evaluate_and_save();
    } else if (save_due) {
      save_last();
    }
    if (dist_.active() && log_due) {
      stop_interrupt = g_interrupted;
      stop_time = c_.time_limit > 0 && seconds_since(start) >= c_.time_limit;
      agree_to_stop(stop_time, stop_interrupt);
    }
  }
  if (!read_losses()) return 1;
  if (c_.profile >= 0 && steps_run <= c_.profile)
    log_->say("--profile " + std::to_string(c_.profile) + ": the run ended after " + std::to_string(steps_run) +
              " steps, before the step to profile");
  if (graphed_)
    log_->say("cuda graphs: " + std::to_string(graphed_->graphs()) + " captured (one per input size), " +
              std::to_string(graphed_->replays()) + " steps replayed");
  if (have_val_ && last_eval_iteration_ != state_.iteration) evaluate_now();
  save_last();
  log_->say(std::string(stopped_by_time ? "stopped by the time limit" : "done") + " after " +
            std::to_string(state_.iteration) + " iterations (" + fmt("%.0f", seconds_since(start)) + " s); saved " +
            (out_ / "last.safetensors").string() +
            (state_.best_iteration >= 0 ? ", best (iteration " + std::to_string(state_.best_iteration) + ") in " +
                                              (out_ / "best.safetensors").string()
                                        : std::string()));
  return 0;
}

}  // namespace

uint64_t step_seed(uint64_t seed, int64_t iteration, int micro, int rank) {
  // splitmix64 over the four values in turn
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  uint64_t h = mix(seed);
  for (uint64_t v : {static_cast<uint64_t>(iteration), static_cast<uint64_t>(micro), static_cast<uint64_t>(rank)})
    h = mix(h ^ v);
  return h;
}

double default_lr(const std::string& arch) {
  if (arch == "tiny_ssd") return 0.05;
  if (arch == "retinanet_resnet50_fpn") return 0.01;
  if (arch == "fasterrcnn_resnet50_fpn") return 0.02;  // torchvision's reference at 16 images
  return 0.002;  // SSD300 / SSD512 (torchvision's reference at batch 32)
}

int64_t default_warmup(const std::string& arch) { return arch == "tiny_ssd" ? 50 : 1000; }

int train(const TrainConfig& config) {
  check(config);  // every value in range (common/config_check.h) before anything is read
  DistOptions dopt;
  dopt.mode = config.dist;
  dopt.backend = config.dist_backend;
  dopt.timeout_s = config.dist_timeout;
  Distributed dist = start_distributed(dopt, config.device, rank_agreement_lines(config));
  if (!dist.active()) {
    Run run(config, dist);
    return run.execute();
  }
  // Several ranks: an error on this rank ends the job here, with one line naming the rank;
  // the others would otherwise wait for it at their next collective (until the timeout).
  int status = 1;
  try {
    Run run(config, dist);
    status = run.execute();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%sssd_train: %s%s\n", ::isatty(1) ? "\n" : "", dist.who().c_str(),
                 one_line(e.what()).c_str());
    std::fflush(stderr);
    eng::dist::abort_job(1);
  }
  eng::dist::set_current(nullptr);
  // Every rank ends the same way (a NaN stop or SIGINT is agreed on): wait for rank 0's
  // checkpoint, then leave MPI together.
  dist.comm()->barrier();
  eng::dist::finalize();
  return status;
}

}  // namespace app
