// The training loop behind ssd_train: datasets, model, optimizer and schedule, the loader,
// logging, periodic evaluation, checkpoints, resume, time limit, NaN stop and SIGINT.
//
// Resume is exact: everything random in a run is a function of (seed, batch number)
// (data/loader.h), and the checkpoint holds the parameters and buffers, the optimizer
// state, the iteration and the next batch number. So k iterations straight and
// k/2 + resume + k/2 give the same losses.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace app {

struct TrainConfig {
  std::string arch;
  std::string data, split = "trainval", images;            // training set
  std::string val, val_split = "test", val_images;         // validation set (optional)
  std::string classes;                                     // class file (VOC layouts)
  int input_size = 0;                                      // 0: the architecture's default
  // --anchor-preset ("": voc, or coco for a COCO .json) and --anchor-sizes (L + 1 scales,
  // "0.05,0.1,..."; implies custom): common/anchor_report.h, models/anchor_scales.h.
  std::string anchor_preset, anchor_sizes;
  std::string device = "cpu";
  std::string precision;                                   // fp32 | tf32 | bf16; "": the device's default
  bool deterministic = false;                              // cuDNN deterministic algorithms, fixed-order sums
  // How images travel to the device: "u8" (uint8, normalised on the device: 4x fewer
  // bytes), "f32" (normalised on the host), "auto" (u8 on cuda, f32 on cpu).
  std::string image_transfer = "auto";
  // Tests only (no flag): with device cpu, run precision bf16's numerics on the CPU's bf16
  // twins (engine/autocast.h), so the accuracy of BF16 training is checked at CPU speed.
  bool bf16_cpu_twin = false;
  int batch = 16;
  int64_t iters = 0, epochs = 0;                           // one of them, or a time limit
  double time_limit = 0;                                   // seconds; 0: none
  double lr = -1;                                          // < 0: the architecture's default
  double momentum = 0.9, wd = 5e-4;
  int64_t warmup = -1;                                     // < 0: the architecture's default
  std::vector<int64_t> steps;                              // LR x0.1 at these iterations
  int workers = 2;
  std::string out = "runs/train";
  std::string resume, init, backbone;
  int64_t eval_every = 0;                                  // 0: evaluate at the end only
  int64_t save_every = 500;                                // last.safetensors every N iterations
  int64_t log_every = 10;
  std::vector<int> multiscale;                             // input sizes drawn per batch
  uint64_t seed = 0;
  bool augment = true;
  // --crop-rule: when the min-IoU crop accepts a patch (data/augment.h). "any": some kept box
  // reaches the mode's threshold (Caffe SSD, torchvision RandomIoUCrop; the default);
  // "every": every box does (GluonCV's random_crop_with_constraints).
  std::string crop_rule = "any";
  // --matcher: the SSD-family anchor matcher (models/ssd_loss.h): "" = the architecture's
  // default, "ssd" (torchvision SSDMatcher) or "bipartite" (GluonCV). Not with --resume
  // (the checkpoint's is used).
  std::string matcher;
  // --trainable-backbone-layers (ResNet-FPN models; -1: the architecture's default, 3) and
  // --rpn-top-n-train / --rpn-top-n-test (two-stage models; 0: 2000 / 1000): written into the
  // model config (models/detection_model.h); not with --resume (the checkpoint's are used).
  int64_t trainable_backbone_layers = -1;
  int64_t rpn_top_n_train = 0, rpn_top_n_test = 0;
  // --backbone-norm frozen|batch (ResNet-FPN models; "" = frozen): ModelConfig::backbone_norm.
  std::string backbone_norm;
  // --min-size / --max-size (models that keep the aspect ratio; 0: the input size):
  // ModelConfig::min_size / max_size, torchvision's GeneralizedRCNNTransform limits.
  int64_t min_size = 0, max_size = 0;
  int eval_batch = 8;
  // --profile N: after N steps of this run, profile the next one (counters and time per
  // phase, printed and written to metrics.jsonl as {"event":"profile",...}); < 0: off.
  int64_t profile = -1;
  // --cuda-graph (CUDA only; off by default): each input size's training step is captured
  // into a CUDA graph after eager warm-up steps and replayed (common/graphed_train_step.h).
  bool cuda_graph = false;
  // --max-gt N: with --cuda-graph, every image's targets are padded to N boxes (static
  // shapes); an image with more training boxes is a one-line error naming it and N.
  int64_t max_gt = kDefaultMaxGt;
  // --clip-grad-norm X (> 0): after each backward the gradients are scaled so that their
  // global L2 norm is at most X (torch.nn.utils.clip_grad_norm_); 0: off. The largest norm
  // of each log interval (before clipping) is logged either way (grad_norm_max).
  double clip_grad_norm = 0;
  // Data-parallel training (docs/distributed.md): --dist auto starts MPI when a launcher
  // (mpirun, srun, torchrun-style variables) started several ranks; none never does.
  // --batch is per rank (global batch = batch x world size x accum).
  std::string dist = "auto";
  std::string dist_backend = "auto";  // auto (nccl on cuda, mpi on cpu) | nccl | mpi
  double dist_timeout = 300;          // seconds a rank waits for the others before stopping the job
  bool sync_bn = false;               // --sync-bn: BatchNorm statistics over the global batch
  int accum = 1;                      // --accum K: K batches per optimizer step
  static constexpr int64_t kDefaultMaxGt = 100;  // COCO's usual cap on detections per image
};

// Runs a whole training; returns the process exit status (0 done, 1 error or NaN stop,
// 130 interrupted by SIGINT after saving). Errors in the configuration or the data are
// thrown as eng::Error. In a data-parallel run with several ranks an error on one rank is
// printed by that rank as one line ("ssd_train: rank R: ...") and ends the whole job
// (eng::dist::abort_job) instead of being thrown: the other ranks must not wait for it.
int train(const TrainConfig& config);

// The defaults a run uses for `arch` when --lr / --warmup are not given.
double default_lr(const std::string& arch);
// The seed of a step's random draws inside the model's loss (DetectionModel::begin_step).
uint64_t step_seed(uint64_t seed, int64_t iteration, int micro, int rank);
int64_t default_warmup(const std::string& arch);

}  // namespace app
