// Data for distributed (data-parallel) runs: which part of the data each of `count` ranks
// takes, and where a resumed run continues when the global batch size has changed.
//
//   * shard_range: the slice of a global training batch that one rank builds
//     (LoaderOptions::shard_rank / shard_count, data/loader.h): rank r of W takes positions
//     [r*B/W, (r+1)*B/W) of the global batch of B samples, so the W slices, concatenated in
//     rank order, are the global batch in its order. B must be divisible by W.
//   * resume_batch: the checkpoint stores the next global batch number; a run resumed with
//     another global batch size (another world size, or another --batch) maps it onto its
//     own numbering so that it continues from the same (epoch, position in the epoch).
//   * shard_samples / shard_indices: evaluation is sharded by strides (sample i goes to rank
//     i % count, as torch's DistributedSampler without shuffle or padding); each rank
//     evaluates its shard and the results are gathered by dataset index.
#pragma once
#include <cstdint>
#include <vector>

#include "data/annotation.h"

namespace data {

// Positions [begin, end) of a global batch of `global_batch` items that rank `rank` of
// `count` builds: begin = rank * global_batch / count, end = (rank + 1) * global_batch /
// count. eng::Error when count < 1, rank is outside 0..count-1, global_batch < 1 or
// global_batch is not divisible by count.
struct ShardRange {
  int64_t begin = 0, end = 0;
};
ShardRange shard_range(int64_t global_batch, int rank, int count);

// The first batch number of a run with global batch size `new_global_batch` that continues
// where a run with `old_global_batch` stopped before its batch `next_batch` (training batch
// numbering of data/loader.h: batches_per_epoch = max(1, dataset_size / batch), the last
// incomplete batch of each epoch dropped, every epoch's order a function of (seed, epoch)
// only).
//
// The old run stopped in epoch e = next_batch / old_bpe after p = (next_batch % old_bpe) *
// old_global_batch samples of that epoch's order. The new run starts in epoch e at batch
// ceil(p / new_global_batch): rounded UP to the next batch boundary, so no sample of the
// epoch is seen twice and fewer than new_global_batch are left out. When that batch is past
// the new run's last full batch of the epoch (the rest of the epoch is the dropped tail),
// it starts at the first batch of epoch e + 1. With an unchanged batch size it returns
// next_batch. eng::Error for a negative next_batch, a batch size or dataset size < 1, or a
// result that would not fit in int64_t.
int64_t resume_batch(int64_t next_batch, int64_t old_global_batch, int64_t new_global_batch, int64_t dataset_size);

// Rank `rank`'s share of `dataset` for distributed evaluation: samples rank, rank + count,
// rank + 2*count, ... in dataset order. Class names, category ids and the reader's warnings
// and counts are copied unchanged (print them from the full dataset, on rank 0 only). The
// shard is empty when rank >= the dataset size (a Loader rejects an empty dataset: such a
// rank has nothing to evaluate). eng::Error when count < 1 or rank is outside 0..count-1.
Dataset shard_samples(const Dataset& dataset, int rank, int count);

// The dataset index of every sample of shard_samples(dataset, rank, count), for a dataset of
// `dataset_size` samples: element j is rank + j * count (shard index j -> dataset index).
std::vector<int> shard_indices(int64_t dataset_size, int rank, int count);

}  // namespace data
