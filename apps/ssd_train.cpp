// ssd_train: trains a registered detector on a VOC or COCO dataset, on the CPU or a GPU.
// The loop itself is app::train (apps/common/trainer.h); this file is the command line.
// Exit codes: 0 done (or stopped by --time-limit), 1 bad arguments, bad data or a
// non-finite loss, 130 interrupted by SIGINT (after saving DIR/last.safetensors).
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "common/anchor_report.h"
#include "common/cli_rules.h"
#include "common/config_check.h"
#include "common/distributed.h"
#include "common/trainer.h"
#include "engine/cpu_threads.h"
#include "engine/error.h"
#include "models/detection_model.h"

int main(int argc, char** argv) {
  // OpenMP threads and their waiting, OpenBLAS single-threaded (engine/cpu_threads.h).
  if (!eng::init_cpu_threads(argc, argv, "ssd_train")) return 1;
  CLI::App cli{"ssd_train: train a detector (tiny_ssd, ssd300_vgg16, ssd512_vgg16, retinanet_resnet50_fpn, "
               "ssdlite320_mobilenet_v3_large, the GluonCV presets ssd512_resnet18_v1 ... ssd300_mobilenet0_25; "
               "ssd_detect --summary --arch A describes one)"};
  app::TrainConfig c;
  std::string steps, multiscale;
  bool no_augment = false;
  cli.add_option("--arch", c.arch, "architecture (taken from the checkpoint with --resume)");
  cli.add_option("--data", c.data, "training data: VOC root(s), comma-separated, or a COCO instances .json")->required();
  cli.add_option("--split", c.split, "VOC split of --data (ImageSets/Main/<split>.txt)")->capture_default_str();
  cli.add_option("--images", c.images, "COCO: image folder of --data (default: the JSON's folder)");
  cli.add_option("--val", c.val, "validation data (VOC root(s) or COCO .json), evaluated with --eval-every and at the end");
  cli.add_option("--val-split", c.val_split, "VOC split of --val")->capture_default_str();
  cli.add_option("--val-images", c.val_images, "COCO: image folder of --val");
  cli.add_option("--classes", c.classes, "class names, one per line (VOC layouts; default: <root>/classes.txt, else VOC's 20)");
  cli.add_option("--input-size", c.input_size, "input side (default: the architecture's)");
  cli.add_option("--anchor-preset", c.anchor_preset,
                 "SSD anchor sizes: voc, coco or custom (default: coco for a COCO .json, else voc)");
  cli.add_option("--anchor-sizes", c.anchor_sizes,
                 "custom anchor scales, fractions of the input side, one per feature level plus one, increasing "
                 "(tiny_ssd 6, ssd300_vgg16 7, ssd512_vgg16 8; `ssd_data anchors` proposes them)");
  cli.add_option("--device", c.device, "cpu or cuda")->capture_default_str();
  cli.add_option("--precision", c.precision, "fp32, tf32 or bf16 (default: bf16 on cuda, fp32 on cpu)");
  cli.add_option("--image-transfer", c.image_transfer,
                 "how images reach the device: u8 (normalised on the device), f32, or auto (u8 on cuda)")
      ->check(CLI::IsMember({"auto", "u8", "f32"}));
  cli.add_flag("--deterministic", c.deterministic, "deterministic cuDNN algorithms and fixed-order sums (cuda)");
  cli.add_option("--batch", c.batch, "images per batch")->capture_default_str();
  cli.add_option("--iters", c.iters, "training iterations");
  cli.add_option("--epochs", c.epochs, "training epochs (instead of --iters)");
  cli.add_option("--time-limit", c.time_limit, "stop cleanly after this many seconds (final evaluation, checkpoint)");
  cli.add_option("--lr", c.lr, "base learning rate (default: tiny_ssd 0.05, SSD 0.002, RetinaNet 0.01)");
  cli.add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str();
  cli.add_option("--wd", c.wd, "weight decay")->capture_default_str();
  cli.add_option("--warmup", c.warmup, "linear warmup iterations from lr/1000 (default: tiny_ssd 50, others 1000)");
  cli.add_option("--steps", steps, "iterations at which the LR is multiplied by 0.1, e.g. 80000,100000");
  cli.add_option("--workers", c.workers, "loader threads (0: load in the training thread)")->capture_default_str();
  cli.add_option("--out", c.out, "output folder: metrics.jsonl, last.safetensors, best.safetensors")->capture_default_str();
  cli.add_option("--resume", c.resume, "continue from a checkpoint (DIR/last.safetensors)");
  cli.add_option("--init", c.init, "start from whole-model weights (strict)");
  cli.add_option("--backbone", c.backbone, "ImageNet classifier weights for the backbone: torchvision vgg16 (ssd300/512_vgg16), resnet50 (retinanet_resnet50_fpn), mobilenet_v3_large (ssdlite320_mobilenet_v3_large, which then gets the full tail, as torchvision builds it), resnet18 / resnet50 (ssd512_resnet18_v1 / ssd512_resnet50_v1, GluonCV v1 layout: docs/gluon_ssd.md); a file of another layout is an error");
  cli.add_option("--eval-every", c.eval_every, "evaluate --val every N iterations (0: at the end only)")->capture_default_str();
  cli.add_option("--save-every", c.save_every, "write DIR/last.safetensors every N iterations")->capture_default_str();
  cli.add_option("--log-every", c.log_every, "a metrics line every N iterations")->capture_default_str();
  cli.add_option("--eval-batch", c.eval_batch, "images per evaluation batch")->capture_default_str();
  cli.add_option("--multiscale", multiscale, "input sides drawn per batch, e.g. 224,256,288");
  cli.add_option("--seed", c.seed, "seed of the initialisation, shuffling and augmentation")->capture_default_str();
  cli.add_flag("--no-augment", no_augment, "train on resized images only");
  cli.add_option("--crop-rule", c.crop_rule,
                 "min-IoU crop acceptance: any (a kept box reaches the threshold: Caffe SSD, torchvision) or every "
                 "(every box does: GluonCV)")
      ->capture_default_str();
  cli.add_option("--matcher", c.matcher,
                 "SSD-family anchor matching: ssd (torchvision SSDMatcher: IoU >= 0.5 plus each box's best anchor) "
                 "or bipartite (GluonCV: one distinct anchor per box, then IoU >= 0.5); default: the architecture's");
  cli.add_option("--trainable-backbone-layers", c.trainable_backbone_layers,
                 "ResNet-FPN models: how many of layer4, layer3, layer2, layer1, conv1 train (0..5; the others are "
                 "frozen); default 3 as torchvision with pretrained weights (conv1 and layer1 frozen)");
  cli.add_option("--backbone-norm", c.backbone_norm,
                 "ResNet-FPN models: frozen (FrozenBatchNorm2d, the pretrained layout; default) or batch "
                 "(BatchNorm2d, as torchvision builds without any weights, for training from scratch; all layers "
                 "then train unless --trainable-backbone-layers says otherwise)");
  cli.add_option("--min-size", c.min_size,
                 "models that keep the aspect ratio (fasterrcnn_resnet50_fpn): torchvision's min_size, the short "
                 "side's target in input pixels (default: the input size); torchvision's 800 / 1333 is --input-size "
                 "1344 --min-size 800 --max-size 1333");
  cli.add_option("--max-size", c.max_size,
                 "the same: torchvision's max_size, the long side's limit (default: the input size)");
  cli.add_option("--rpn-top-n-train", c.rpn_top_n_train,
                 "two-stage models: RPN proposals kept per image before and after NMS in training (default 2000)");
  cli.add_option("--rpn-top-n-test", c.rpn_top_n_test,
                 "two-stage models: the same in inference (default 1000; saved with the weights, so ssd_detect uses it)");
  cli.add_option("--profile", c.profile,
                 "after N steps, profile one step: launches, host syncs, driver allocations, bytes copied, time "
                 "per phase (printed and in metrics.jsonl)");
  cli.add_flag("--cuda-graph", c.cuda_graph,
               "cuda: capture each input size's training step (forward, loss, backward, optimizer) into a CUDA "
               "graph after eager warm-up steps and replay it (off by default: not yet validated on a GPU)");
  cli.add_option("--max-gt", c.max_gt,
                 "with --cuda-graph: boxes per image the targets are padded to (static shapes); an image with "
                 "more is an error")
      ->capture_default_str();
  cli.add_option("--clip-grad-norm", c.clip_grad_norm,
                 "clip the gradients' global L2 norm to this value each step (torch clip_grad_norm_; 0: off); "
                 "the largest norm per log interval is logged either way (grad_norm_max)")
      ->capture_default_str();
  cli.add_option("--dist", c.dist,
                 "auto: data-parallel over the ranks that mpirun / srun / torchrun started (--batch is per rank); "
                 "none: this process alone")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none"}));
  cli.add_option("--dist-backend", c.dist_backend, "auto (nccl on cuda, mpi on cpu), nccl or mpi")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "nccl", "mpi"}));
  cli.add_option("--dist-timeout", c.dist_timeout,
                 "seconds a rank waits for the others at a collective before stopping the whole job")
      ->capture_default_str();
  cli.add_flag("--sync-bn", c.sync_bn, "BatchNorm statistics over the global batch of all ranks (tiny_ssd)");
  cli.add_option("--accum", c.accum, "gradient accumulation: batches per optimizer step")->capture_default_str();
  int threads = 0;
  cli.add_option("--threads", threads,
                 "OpenMP threads (0: the CPUs this process may use, from its affinity and cgroup quota; "
                 "also ENGINE_CPU_THREADS; ENGINE_CPU_SPIN=passive|short|active sets how they wait)")
      ->capture_default_str();
  // Every number checked on its text before conversion, the fixed sets by name
  // (common/config_check.h); then the whole config, before any data is read.
  auto rules = app::train_rules();
  rules.push_back(app::int_rule("--threads", 0, 1024));
  app::apply_rules(cli, rules);
  cli.get_option("--arch")->check(CLI::IsMember(models::model_names()));
  cli.get_option("--device")->check(CLI::IsMember({"cpu", "cuda"}));
  cli.get_option("--precision")->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  try {
    cli.parse(argc, argv);
    eng::set_cpu_threads(threads);
    if (!steps.empty()) c.steps = app::parse_int_list(app::int_rule("--steps", 1, 1e12), steps);
    if (!multiscale.empty())
      for (int64_t s : app::parse_int_list(app::input_size_rule("--multiscale", c.arch, false), multiscale))
        c.multiscale.push_back(static_cast<int>(s));
    c.augment = !no_augment;
    app::check(c);
    if (!c.arch.empty() && c.resume.empty()) {  // the anchor flags, before any data is read
      models::ModelConfig mc;
      mc.arch = c.arch;
      app::apply_anchor_flags(mc, c.anchor_preset, c.anchor_sizes, "voc");
    }
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.exit(e);
    std::cerr << app::cli_error_line("ssd_train", e) << " (see --help)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ssd_train: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  try {
    return app::train(c);
  } catch (const std::exception& e) {
    if (app::reported_elsewhere(e)) return 1;  // rank 0 printed it for every rank
    // On a terminal the progress bar holds stdout's line: start a new one first.
    std::cerr << (::isatty(1) ? "\n" : "") << "ssd_train: " << app::one_line(e.what()) << "\n";
    return 1;
  }
}
