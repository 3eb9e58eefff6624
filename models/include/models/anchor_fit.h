// How well a model's anchors fit a dataset's boxes, and anchor sizes fitted to them.
//
// Fit: each training box (difficult and crowd objects left out, scaled to the input side S
// as the loader scales it without augmentation: x by S / width, y by S / height, boxes under
// 1 px dropped) against every anchor of the model at S (det::box_iou). The share of boxes
// whose best anchor reaches IoU 0.5 is the best recall SSD's matcher can give (a box below
// it still gets its best anchor forced, but as a poor regression target); the median of
// the best IoUs says how far off the rest are.
//
// Proposal: k-means on the boxes' shapes (w, h), both centred at the origin, with 1 - IoU
// as the distance (YOLOv2's dimension clusters, darknet's gen_anchors, YOLOv5's
// autoanchor); k-means++ seeding from a fixed-seed mt19937, centroids = member means.
// The clusters' sizes sqrt(w h) / S, sorted, become the model's L + 1 anchor scales
// (models/anchor_scales.h), interpolated in log space when k != L + 1. The clusters ignore
// where the model puts anchors (level k's stride; tiny_ssd's finest is S/8), so the scales
// are then refined against the real anchors, as YOLOv5's autoanchor evolves its k-means
// result. The search starts from the best (by its fitness) of the k-means scales, the
// preset's, and each splice of the j smallest k-means scales with the preset's coarse ones
// (on small objects k-means alone also shrinks the coarse levels' anchors, which measured
// worse than the defaults; see docs/training.md). It is a deterministic coordinate search that multiplies one scale at a time by 0.8,
// 0.9, 1.1 or 1.25 and keeps a change when recall + 0.5 * mean best IoU grows (on at most
// 2000 boxes, every n-th).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/annotation.h"
#include "data/input_fit.h"
#include "engine/tensor.h"
#include "models/detection_model.h"

namespace models {

constexpr double kAnchorFitIoU = 0.5;        // SSD's matching threshold
constexpr double kPoorAnchorFitRecall = 0.9; // under this share, ssd_train warns

struct AnchorFit {
  int64_t boxes = 0;        // boxes measured
  double recall = 0;        // share whose best anchor has IoU >= 0.5
  double median_iou = 0;    // median of the best IoUs (0 when there are no boxes)
  double mean_iou = 0;      // mean of the best IoUs
};

struct TrainingBoxes {
  std::vector<data::Box> boxes;   // in input pixels
  int64_t unsized_images = 0;     // samples whose annotation has no image size (not counted)
};

// The training boxes of `d` at input side `input_size` (see above), fitted as the loader
// fits their images: stretched to S x S, or with keep_aspect as two-stage models ask
// (DetectionModel::keep_aspect_ratio, data/input_fit.h).
TrainingBoxes fit_boxes(const data::Dataset& d, int input_size, bool keep_aspect = false,
                        const data::AspectLimits& limits = {});
// boxes against anchors [A, 4] (corners, input pixels, any float dtype, CPU or not).
AnchorFit measure_anchor_fit(const std::vector<data::Box>& boxes, const eng::Tensor& anchors);
// "N boxes: 43.1% reach IoU 0.5 with their best anchor, median best IoU 0.46"
std::string describe_anchor_fit(const AnchorFit& fit);

struct BoxShape {
  double w = 0, h = 0;
};
// IoU of two shapes centred at the same point.
double shape_iou(const BoxShape& a, const BoxShape& b);
// k clusters of `shapes` (sorted by area), deterministic for a seed. Throws when k < 1 or
// there are fewer distinct shapes than k.
std::vector<BoxShape> kmeans_iou_shapes(const std::vector<BoxShape>& shapes, int k, uint64_t seed = 0,
                                        int max_iters = 300);
// Mean over shapes of the best IoU with a cluster (k-means' own fit figure).
double mean_best_shape_iou(const std::vector<BoxShape>& shapes, const std::vector<BoxShape>& clusters);
// `count` increasing scales (fractions of input_size) from clusters sorted by area.
std::vector<double> scales_from_clusters(const std::vector<BoxShape>& clusters, int input_size, int64_t count);

struct AnchorProposal {
  std::vector<BoxShape> clusters;       // k-means result, sorted by area (input pixels)
  double cluster_iou = 0;               // mean_best_shape_iou of the clusters
  std::vector<double> kmeans_scales;    // scales_from_clusters
  std::string start;                    // the refinement's start: "k-means", "preset" or
                                        // "k-means j + preset m" (a splice, see the .cpp)
  std::vector<double> scales;           // after the refinement
  AnchorFit fit;                        // of `scales`, on all boxes
};
// k-means (k clusters; k <= 0: the architecture's scale count) then the refinement, for
// `base` (arch, input_size, num_classes; the preset is replaced by custom). Throws for an
// architecture without custom sizes or with no boxes.
AnchorProposal propose_anchor_scales(const std::vector<data::Box>& boxes, const ModelConfig& base, int k,
                                     uint64_t seed);

}  // namespace models
