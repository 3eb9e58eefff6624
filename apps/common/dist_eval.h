// Evaluation spread over the ranks of a data-parallel run (issue 13): rank r detects on the
// images i of the dataset with i % world == r, the detections of every rank are gathered
// (all_gather_bytes), put back in dataset order and scored on every rank, so the metrics
// equal evaluate_model's on one process (same detections, same order, same scoring).
#pragma once
#include "common/inference.h"
#include "engine/dist/communicator.h"

namespace app {

EvalRun evaluate_model_sharded(models::DetectionModel& model, const data::Dataset& dataset, eng::Device device,
                               const InferenceOptions& options, int batch_size, int workers,
                               eng::dist::Communicator& comm);

// The wire format of one rank's detections (exposed for tests): per image its dataset index,
// original width and height and its Found list; decode appends to `out` indexed by dataset
// index. Throws eng::Error on a malformed or truncated buffer.
struct ShardImage {
  int index = 0, width = 0, height = 0;
  std::vector<Found> found;
};
std::vector<uint8_t> encode_shard(const std::vector<ShardImage>& images);
std::vector<ShardImage> decode_shard(const std::vector<uint8_t>& bytes);

}  // namespace app
