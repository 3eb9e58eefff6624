// Detection evaluation: PASCAL VOC AP (11-point VOC07 and area-under-envelope VOC2010+)
// and the COCO box metrics (AP@[.5:.95], AP50, AP75, APs/APm/APl), each following the
// published definition of the official tool.
//
// Inputs are plain ground-truth boxes and detections; images are matched by `image` key
// (the file base name). Boxes are corners (x1, y1, x2, y2) in pixels.
//
// VOC (the MATLAB devkit, VOCevaldet.m / VOCap.m):
//   * per class, detections sorted by score, descending (stable: ties keep input order);
//   * IoU uses the devkit's inclusive-pixel convention: widths are x2 - x1 + 1, heights
//     y2 - y1 + 1 (the "+1" convention), so VOC numbers on float boxes differ slightly from
//     a plain IoU;
//   * a detection takes its highest-IoU ground truth of its class in its image (the first on
//     ties); if that IoU >= 0.5 (the devkit's `ovmax >= minoverlap`): a difficult GT makes the
//     detection "don't care" (neither TP nor FP), an unmatched GT makes it a TP and marks the
//     GT matched, an already matched GT makes it an FP (duplicate); otherwise it is an FP;
//   * npos counts the non-difficult GT; a GT flagged iscrowd is treated as difficult here;
//   * VOC07 AP = mean over t in {0, 0.1, ..., 1} (t = k / 10.0) of the maximal precision at
//     recall >= t (0 if recall never reaches t);
//   * VOC area AP = area under the monotone (right-to-left running max) precision envelope;
//   * classes without a non-difficult GT get AP -1 and are left out of the means.
//
// COCO (the pycocotools COCOeval algorithm for bbox, iouType "bbox"):
//   * IoU thresholds 0.50:0.05:0.95, 101 recall points 0:0.01:1, maxDets 100 per image and
//     category (highest scores kept), area ranges all [0, 1e10], small [0, 32^2],
//     medium [32^2, 96^2], large [96^2, 1e10] (both ends inclusive, as pycocotools);
//   * plain IoU (widths x2 - x1, no +1); against a crowd GT the IoU is intersection / det area;
//   * per image and category, detections in score order greedily take the best still-free GT
//     with IoU >= threshold, preferring non-ignored GT; a crowd GT can take many detections;
//   * GT is ignored when iscrowd or its `area` lies outside the range (area <= 0 means "use
//     the box area"); a detection matched to an ignored GT is ignored, an unmatched detection
//     whose box area lies outside the range is ignored;
//   * precision is made monotone and read at the 101 recall points (0 beyond the highest
//     recall); a category with no non-ignored GT in a range is -1 and left out of the mean;
//   * the `difficult` flag has no effect on the COCO numbers (pycocotools ignores it);
//   * detections of all images are merged per category with ties in score broken by image
//     key order (pycocotools: image id order) and then by score order within the image.
// Detections and GT whose category is not in the evaluated list are skipped. A detection on
// an image without any GT is simply a false positive.
#pragma once
#include <string>
#include <vector>

namespace data {

struct Box {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

struct GroundTruth {
  std::string image;  // image key: the file base name
  Box box;
  int category = 0;
  bool difficult = false;  // VOC
  bool iscrowd = false;    // COCO
  double area = -1;        // COCO `area` field, used for the size ranges; <= 0: box area
};

struct Detection {
  std::string image;
  Box box;
  int category = 0;
  double score = 0;
};

struct ClassResult {
  int category = 0;
  int num_gt = 0;          // non-difficult, non-crowd GT (VOC npos)
  double ap_voc07 = -1;    // -1 when the class has no GT
  double ap_voc_area = -1;
  double ap_coco = -1;     // AP@[.5:.95], area all
};

struct EvalResult {
  double map_voc07 = -1, map_voc_area = -1;
  double map_coco = -1, ap50 = -1, ap75 = -1, aps = -1, apm = -1, apl = -1;
  std::vector<ClassResult> per_class;
};

// Evaluates over the given category ids (in this order in per_class).
EvalResult evaluate(const std::vector<GroundTruth>& gt, const std::vector<Detection>& dets,
                    const std::vector<int>& category_ids);
// Categories 0 .. num_classes - 1.
EvalResult evaluate(const std::vector<GroundTruth>& gt, const std::vector<Detection>& dets, int num_classes);

// The building blocks, exposed for tests.
// VOC AP from recall/precision arrays (detections in score order).
double voc07_ap(const std::vector<double>& recall, const std::vector<double>& precision);
double voc_area_ap(const std::vector<double>& recall, const std::vector<double>& precision);
// VOC IoU with the devkit's +1 pixel widths; COCO IoU (plain, crowd: inter / det area).
double voc_iou(const Box& det, const Box& gt);
double coco_iou(const Box& det, const Box& gt, bool crowd);

// One JSON object: map_voc07, map_voc_area, map_coco, ap50, ap75, aps, apm, apl and
// per_class [{category, num_gt, ap_voc07, ap_voc_area, ap_coco}].
std::string to_json(const EvalResult& r);

}  // namespace data
