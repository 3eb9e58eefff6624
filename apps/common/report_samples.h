// The sample grid of the training report: a few held-out images with their ground truth
// and the model's detections drawn (data/draw.h), each encoded as a base64 JPEG for an
// inline <img src="data:image/jpeg;base64,...">.
//
// The images are `count` samples spread evenly over the dataset (index i * n / count: the
// same images every time), scaled so that the longer side is 288 pixels (small images up,
// large ones down) before drawing, so lines and labels stay crisp. Ground truth: thin white
// outlines edged in black (difficult / crowd ones grey); detections: the class colour with a "name 0.87"
// tag, at most 20 per image, score >= score_thresh.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/annotation.h"
#include "engine/dtype.h"
#include "models/detection_model.h"

namespace app::report {

struct SampleImage {
  std::string name;         // the image key
  std::string jpeg_base64;  // the drawn image
  int width = 0, height = 0;
  int num_gt = 0, num_detections = 0;  // drawn
};

// Runs `model` (switched to eval mode, then back) on `device`. Images that cannot be read are
// left out with a line in `warnings`.
std::vector<SampleImage> sample_images(models::DetectionModel& model, const data::Dataset& dataset, eng::Device device,
                                       int count, double score_thresh, std::vector<std::string>& warnings);

std::string base64(const std::vector<uint8_t>& bytes);

}  // namespace app::report
