#include "data/shard.h"

#include <algorithm>
#include <climits>

#include "engine/error.h"

namespace data {

namespace {

void check_rank(const char* what, int rank, int count) {
  ENGINE_CHECK(count >= 1, what, ": shard count must be at least 1 (got ", count, ")");
  ENGINE_CHECK(rank >= 0 && rank < count, what, ": shard rank ", rank, " out of range 0..", count - 1);
}

}  // namespace

ShardRange shard_range(int64_t global_batch, int rank, int count) {
  check_rank("shard_range", rank, count);
  ENGINE_CHECK(global_batch >= 1, "shard_range: global batch must be at least 1 (got ", global_batch, ")");
  ENGINE_CHECK(global_batch % count == 0, "shard_range: global batch ", global_batch,
               " is not divisible by the shard count ", count);
  const int64_t per = global_batch / count;  // exact: no rank * global_batch overflow
  return {rank * per, (rank + 1) * per};
}

int64_t resume_batch(int64_t next_batch, int64_t old_global_batch, int64_t new_global_batch, int64_t dataset_size) {
  ENGINE_CHECK(next_batch >= 0, "resume_batch: negative batch number ", next_batch);
  ENGINE_CHECK(old_global_batch >= 1, "resume_batch: old global batch must be at least 1 (got ", old_global_batch, ")");
  ENGINE_CHECK(new_global_batch >= 1, "resume_batch: new global batch must be at least 1 (got ", new_global_batch, ")");
  ENGINE_CHECK(dataset_size >= 1, "resume_batch: dataset size must be at least 1 (got ", dataset_size, ")");
  if (old_global_batch == new_global_batch) return next_batch;
  // Batches per epoch as the loader counts them (a batch larger than the dataset: one
  // batch of the whole dataset per epoch).
  const int64_t old_bpe = std::max<int64_t>(1, dataset_size / old_global_batch);
  const int64_t new_bpe = std::max<int64_t>(1, dataset_size / new_global_batch);
  int64_t epoch = next_batch / old_bpe;
  const int64_t done = (next_batch % old_bpe) * old_global_batch;  // samples of the epoch consumed (<= size)
  int64_t k = done / new_global_batch + (done % new_global_batch != 0 ? 1 : 0);
  if (k >= new_bpe) {  // only the dropped tail (or nothing) is left of this epoch
    ENGINE_CHECK(epoch < INT64_MAX, "resume_batch: batch ", next_batch, " is too large");
    ++epoch;
    k = 0;
  }
  ENGINE_CHECK(epoch <= (INT64_MAX - k) / new_bpe, "resume_batch: batch ", next_batch, " at global batch ",
               new_global_batch, " does not fit in 64 bits");
  return epoch * new_bpe + k;
}

std::vector<int> shard_indices(int64_t dataset_size, int rank, int count) {
  check_rank("shard_indices", rank, count);
  ENGINE_CHECK(dataset_size >= 0 && dataset_size <= INT_MAX, "shard_indices: dataset size ", dataset_size,
               " out of range 0..", INT_MAX);
  std::vector<int> out;
  out.reserve(static_cast<size_t>((dataset_size + count - 1) / count));
  for (int64_t i = rank; i < dataset_size; i += count) out.push_back(static_cast<int>(i));
  return out;
}

Dataset shard_samples(const Dataset& dataset, int rank, int count) {
  check_rank("shard_samples", rank, count);
  Dataset out;
  out.class_names = dataset.class_names;
  out.category_ids = dataset.category_ids;
  out.warnings = dataset.warnings;
  out.skipped_images = dataset.skipped_images;
  out.skipped_objects = dataset.skipped_objects;
  for (int i : shard_indices(static_cast<int64_t>(dataset.samples.size()), rank, count))
    out.samples.push_back(dataset.samples[static_cast<size_t>(i)]);
  return out;
}

}  // namespace data
