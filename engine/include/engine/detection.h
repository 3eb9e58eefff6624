// Detection utilities: anchors, IoU, matching, box coding, hard-negative mining, NMS and
// the fused post-processing. They are not differentiable (no Node), but each has the same
// CPU reference / CUDA kernel pairing as the ops, with its maths in
// kernels/include/kernels/<name>.h. Implementations live in engine/src/detection/*.cpp.
//
// Boxes are corner format (x1, y1, x2, y2), float (f32 or f64), last dim 4. Area is
// (x2 - x1) * (y2 - y1) with no +1, as torchvision.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace eng::det {

// ---------------------------------------------------------------- anchors (anchors.cpp)
// One feature-map level of a prior generator.
struct PriorLevel {
  int64_t fmap_h = 0, fmap_w = 0;
  double step_h = 0, step_w = 0;   // pixels between centres; <= 0: image size / fmap size
  std::vector<double> sizes;       // MultiBox: box sides (pixels, or fractions when normalized input)
  std::vector<double> ratios;      // MultiBox: width / height; CrossProduct: height / width (torchvision)
  double offset = 0.5;             // centre of cell (i, j) = ((j + offset) step_w, (i + offset) step_h)
};

enum class PriorOrder {
  // MultiBoxPrior / SSD: per location len(sizes) + len(ratios) - 1 boxes: every size with
  // ratios[0], then sizes[0] with ratios[1..]. A box of size s and ratio r has width
  // s*sqrt(r), height s/sqrt(r). SSD300 uses sizes {s_k, sqrt(s_k s_k+1)} and ratios
  // {1, 2, 1/2[, 3, 1/3]}, which gives torchvision's DefaultBoxGenerator order.
  MultiBox,
  // RetinaNet / torchvision AnchorGenerator: the full cross product, ratio-major (for each
  // ratio, for each size): h_ratio = sqrt(r), w_ratio = 1 / h_ratio, w = w_ratio s,
  // h = h_ratio s (r is height / width); the base box [-w/2, -h/2, w/2, h/2] is rounded to
  // integers, then shifted to each centre (torchvision uses offset 0: centres at j * step).
  CrossProduct,
};

enum class PriorClip {
  None,
  Corners,     // clamp x1, y1, x2, y2 into the image (GluonCV / MultiBoxPrior clip=True)
  CenterSize,  // clamp w and h to [0, 1] in normalized units, keep the centre
               // (torchvision DefaultBoxGenerator clip=True)
};

struct PriorOptions {
  PriorOrder order = PriorOrder::MultiBox;
  PriorClip clip = PriorClip::None;
  bool normalized = false;    // output in [0, 1] units (divided by image w / h) instead of pixels
  bool sizes_normalized = false;  // sizes are fractions of the image side (d2l / GluonCV style)
};

// All levels' anchors, level by level, location-major (row i, column j), then the
// per-location order above: [A, 4] corners, f32 on `device`.
Tensor multibox_prior(const std::vector<PriorLevel>& levels, int64_t image_h, int64_t image_w,
                      const PriorOptions& options, Device device = Device::cpu());
// Number of anchors the call above would produce (no allocation).
int64_t num_priors(const std::vector<PriorLevel>& levels, PriorOrder order);

// ---------------------------------------------------------------- IoU (box_iou.cpp)
// a [N, 4], b [M, 4] -> [N, M]; 0 where the union is 0.
Tensor box_iou(const Tensor& a, const Tensor& b);
// gt [B, G, 4] (padded), anchors [A, 4] -> [B, G, A]. Rows g >= counts[b] are 0.
Tensor box_iou_batched(const Tensor& gt, const Tensor& gt_counts, const Tensor& anchors);

// ---------------------------------------------------------------- matching (matcher.cpp)
// Inputs: iou [B, G, A] (G padded; only rows g < gt_counts[b] are real), gt_counts i64 [B].
// Output: i64 [B, A]: the matched GT index, or kBackground (-1), or kIgnore (-2).
constexpr int64_t kBackground = -1;
constexpr int64_t kIgnore = -2;

// SSD (torchvision SSDMatcher): anchor a takes argmax_g iou[g, a] when that IoU >= threshold,
// else background; then every real GT g forces its best anchor argmax_a iou[g, a] to g.
// Ties: argmax takes the lowest index; when several GTs force the same anchor the highest GT
// index wins (torchvision's scatter order on the CPU). Images with zero GT: all background.
Tensor match_ssd(const Tensor& iou, const Tensor& gt_counts, double threshold = 0.5);

// Bipartite then threshold (GluonCV CompositeMatcher[BipartiteMatcher, MaximumMatcher(threshold)]):
//   1. global greedy one-to-one: repeatedly take the largest IoU over the pairs (anchor, GT)
//      whose anchor and GT are both still free, if it is > 1e-12, and match them; so every real
//      GT with a positive IoU somewhere gets its own, distinct anchor. Equal IoUs: the lower
//      anchor index first, then the lower GT index.
//   2. ties: a still free anchor whose best IoU (argmax over GTs, lowest index on ties) is within
//      1e-12 of that GT's column maximum (its best IoU over all anchors, > 1e-12) takes that GT.
//   3. threshold: a still free anchor whose best IoU >= threshold takes its best GT.
// Everything else is background. Images with zero GT: all background.
Tensor match_bipartite(const Tensor& iou, const Tensor& gt_counts, double threshold = 0.5);

// Which SSD matcher a loss uses: ssd = match_ssd (torchvision), bipartite = match_bipartite (GluonCV).
enum class MatchRule { ssd, bipartite };
const char* match_rule_name(MatchRule rule);  // "ssd" | "bipartite"
Tensor match_anchors(const Tensor& iou, const Tensor& gt_counts, MatchRule rule, double threshold = 0.5);

// RetinaNet (torchvision Matcher(0.5, 0.4, allow_low_quality_matches=True)): best GT per
// anchor; IoU < bg -> background, bg <= IoU < fg -> ignore, else the GT. Low-quality: for
// every real GT, each anchor whose IoU with it equals that GT's best IoU (ties included)
// gets its own best GT (argmax over GTs), even below fg (not when that best IoU is 0).
Tensor match_retinanet(const Tensor& iou, const Tensor& gt_counts, double fg_threshold = 0.5,
                       double bg_threshold = 0.4, bool allow_low_quality = true);

// ---------------------------------------------------------------- targets (assign_targets.cpp)
// Training targets from the matches, built where the inputs live (no host copy on CUDA).
// Inputs: matched i64 [B, A] (match_ssd / match_retinanet), gt_boxes [B, G, 4] (f32 or
// f64, G padded), gt_labels i64 [B, G], anchors [A, 4] (gt_boxes' dtype); all on one device.
// Per anchor (b, a), m = matched[b, a]:
//   m >= 0 (positive):  labels = gt_labels[b, m], boxes = gt_boxes[b, m], positive = 1
//   m == kIgnore:       labels = ignore_label,     boxes = anchors[a],     positive = 0
//   m == kBackground:   labels = background_label, boxes = anchors[a],     positive = 0
// (the anchor as the box of a non-positive keeps its encoding finite: all zeros), and
// num_positive[b] = number of positives of image b. G == 0 is fine (nothing is positive).
// The losses use background/ignore labels SSD 0/0, TinySSD 0/-1, RetinaNet -1/-2.
// Checks: when the inputs are CPU tensors, every match must be kBackground, kIgnore or in
// [0, G), and the label of every matched GT must be in [0, num_classes) (one-line error
// naming image, anchor and GT). Device-resident matches and labels are trusted (reading them
// back would cost a host synchronisation): labels are copied as they are, and an index >= G
// (which the matchers never produce) is treated as background instead of read.
struct AssignedTargets {
  Tensor labels;        // i64 [B, A]
  Tensor boxes;         // [B, A, 4], gt_boxes' dtype
  Tensor positive;      // [B, A], gt_boxes' dtype: 1 or 0
  Tensor num_positive;  // i64 [B]
};
// gt_ignore (optional) u8 [B, G] on the same device: a nonzero entry marks an ignored GT
// (difficult / crowd). An anchor matched to it gets ignore_label, the anchor as its box and
// positive 0: neither positive nor negative (the losses give it no loss and never mine it).
// Ignored GTs still take part in the matching, so they claim the anchors that cover them.
AssignedTargets assign_targets(const Tensor& matched, const Tensor& gt_boxes, const Tensor& gt_labels,
                               const Tensor& anchors, int64_t num_classes, int64_t background_label = 0,
                               int64_t ignore_label = 0, const Tensor& gt_ignore = Tensor());

// ---------------------------------------------------------------- box coding (box_coder.cpp)
struct BoxCoderWeights {
  double wx = 10, wy = 10, ww = 5, wh = 5;  // SSD (variances 0.1, 0.1, 0.2, 0.2); RetinaNet: 1,1,1,1
};
// Both broadcast boxes [..., A, 4] against anchors [A, 4].
//   tx = wx (gx - ax) / aw, ty = wy (gy - ay) / ah, tw = ww ln(gw / aw), th = wh ln(gh / ah)
// with centres and sizes of the corner boxes.
Tensor box_encode(const Tensor& boxes, const Tensor& anchors, const BoxCoderWeights& w = {});
// Inverse; dw = tw / ww and dh = th / wh are clamped at clamp (default ln(1000 / 16)).
Tensor box_decode(const Tensor& deltas, const Tensor& anchors, const BoxCoderWeights& w = {},
                  double clamp = 4.135166556742356);

// ---------------------------------------------------------------- mining (hard_negative_mining.cpp)
// loss [B, A] (per-anchor classification loss, float), labels i64 [B, A] (> 0 positive,
// == 0 negative candidate, < 0 never selected). Per image with P positives keep the
// k = min(floor(ratio * P), number of candidates) negatives with the largest loss (k = min_negatives
// when P == 0, capped likewise). Ties: the lower anchor index wins; NaN losses rank above +inf. Returns a u8 mask [B, A] of the selected
// negatives (positives are not included).
Tensor hard_negative_mining(const Tensor& loss, const Tensor& labels, double ratio = 3.0,
                            int64_t min_negatives = 0);

// ---------------------------------------------------------------- NMS (nms.cpp, postprocess.cpp)
// K = max_per_image; floats in the input's dtype (the CUDA path takes f32 only).
struct Detections {
  Tensor boxes;   // [B, K, 4] corners (padded with zeros)
  Tensor scores;  // [B, K], descending within an image (padded with 0)
  Tensor labels;  // i64 [B, K] class index (padded with -1)
  Tensor counts;  // i64 [B] real detections per image
};

// Class-wise NMS over candidates already gathered per image: boxes [B, K, 4], scores
// [B, K], labels i64 [B, K] (label < 0: padding, ignored). Boxes of different labels never
// suppress each other. Per label, candidates are taken by descending score (ties: lower
// index first), and a box is dropped when its IoU with a kept box of the same label is
// > iou_threshold. Keeps at most max_per_image per image, by descending score.
Detections batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& labels, double iou_threshold,
                       int64_t max_per_image);

enum class ScoreKind {
  Softmax,  // SSD: class 0 is background; scores = softmax over classes
  Sigmoid,  // RetinaNet: independent sigmoid per class, no background class
};

struct PostprocessOptions {
  ScoreKind kind = ScoreKind::Softmax;
  double score_threshold = 0.01;
  int64_t topk_candidates = 400;   // Softmax: per class; Sigmoid: per level over (anchor, class)
  double nms_threshold = 0.45;
  int64_t max_per_image = 200;
  BoxCoderWeights weights{};       // SSD 10,10,5,5; RetinaNet 1,1,1,1
  std::vector<int64_t> level_sizes;  // Sigmoid: anchors per level (sum = A); empty = one level
  double clip_width = 0, clip_height = 0;  // > 0: clamp decoded boxes into the image before NMS
                                           // (torchvision clip_boxes_to_image); 0: no clip
  static PostprocessOptions ssd();        // 0.01, 400 per class, 0.45, 200, (10,10,5,5)
  static PostprocessOptions retinanet();  // 0.05, 1000 per level, 0.5, 300, (1,1,1,1)
};

// Raw head outputs -> detections: class_logits [B, A, C], box_deltas [B, A, 4], anchors
// [A, 4] (pixels). Scores, threshold, top-k, decode of the survivors only (clipped to the
// image when options.clip_width > 0), class-wise NMS, final top-k. On CUDA every step stays on the device.
// Labels are class indices into C (for Softmax they are >= 1).
Detections detect_postprocess(const Tensor& class_logits, const Tensor& box_deltas, const Tensor& anchors,
                              const PostprocessOptions& options);

}  // namespace eng::det
