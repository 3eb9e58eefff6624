// Data for distributed runs (data/shard.h, LoaderOptions::shard_rank / shard_count): the W
// shards of a global training batch, concatenated in rank order, are bit for bit the batch
// of one process with the same global batch size (multiscale, full augmentation, any worker
// count, float and u8 images); option errors; the empty-shard rule with bad images;
// resume_batch against a brute-force definition and against the loader's own stream; and
// strided evaluation shards that together give the single-process evaluation batches.
//
// Data: one synthetic VOC dataset (40 images of 96x80) written once per process.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/synth.h"
#include "engine/error.h"
#include "temp_dir.h"

using Catch::Matchers::Contains;

namespace {

constexpr int kImages = 40;

const data::Dataset& clean_dataset() {
  static test::TempDir dir("loader_shard");
  static const data::Dataset d = [] {
    data::SynthOptions s;
    s.width = 96;
    s.height = 80;
    s.num_classes = 3;
    s.min_objects = 1;
    s.max_objects = 4;
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, kImages, 0, 4321, s);
    data::VocOptions o;
    o.roots = {dir.path.string()};
    data::Dataset ds = data::load_voc(o);
    REQUIRE(ds.samples.size() == static_cast<size_t>(kImages));
    return ds;
  }();
  return d;
}

data::LoaderOptions base_options() {
  data::LoaderOptions o;  // full SSD augmentation (the default AugmentOptions)
  o.batch_size = 8;
  o.workers = 0;
  o.seed = 77;
  o.input_sizes = {64};
  o.mean = {123.675, 116.28, 103.53};
  o.std = {58.395, 57.12, 57.375};
  return o;
}

std::vector<data::Batch> take(data::Loader& loader, int count) {
  std::vector<data::Batch> out;
  for (int i = 0; i < count; ++i) {
    data::Batch b;
    REQUIRE(loader.next(b));
    out.push_back(std::move(b));
  }
  return out;
}

// Bytes of item k of a batch image tensor [n, 3, S, S] (f32 or u8).
std::string item_bytes(const eng::Tensor& t, int64_t k) {
  const size_t per = static_cast<size_t>(3 * t.sizes()[2] * t.sizes()[3]) *
                     (t.dtype() == eng::DType::u8 ? 1 : sizeof(float));
  const char* p = static_cast<const char*>(t.raw_data()) + static_cast<size_t>(k) * per;
  return std::string(p, per);
}

bool same_object_lists(const std::vector<data::Object>& a, const std::vector<data::Object>& b) {
  if (a.size() != b.size()) return false;
  for (size_t j = 0; j < a.size(); ++j) {
    const data::Object &x = a[j], &y = b[j];
    if (x.label != y.label || x.difficult != y.difficult || x.box.x1 != y.box.x1 || x.box.y1 != y.box.y1 ||
        x.box.x2 != y.box.x2 || x.box.y2 != y.box.y2)
      return false;
  }
  return true;
}

// "" when `shards` (rank order) concatenate to `whole` bit for bit, else what differs.
std::string union_difference(const data::Batch& whole, const std::vector<data::Batch>& shards) {
  int64_t k = 0;
  for (size_t r = 0; r < shards.size(); ++r) {
    const data::Batch& s = shards[r];
    const std::string at = "rank " + std::to_string(r) + ": ";
    if (s.number != whole.number) return at + "number";
    if (s.epoch != whole.epoch) return at + "epoch";
    if (s.input_size != whole.input_size) return at + "input size";
    if (s.images.dtype() != whole.images.dtype()) return at + "dtype";
    if (s.images.dim() != 4 || s.images.sizes()[0] != s.size()) return at + "image count";
    if (s.images.sizes()[2] != whole.input_size || s.images.sizes()[3] != whole.input_size) return at + "image size";
    if (s.images_at.size() != 1 || !(s.images_at[0].sizes() == s.images.sizes())) return at + "images_at";
    if (s.objects.size() != s.samples.size() || s.widths.size() != s.samples.size()) return at + "item lists";
    for (int64_t i = 0; i < s.size(); ++i, ++k) {
      const std::string item = at + "item " + std::to_string(i) + ": ";
      if (k >= whole.size()) return item + "more items than the whole batch";
      const auto ki = static_cast<size_t>(k), ii = static_cast<size_t>(i);
      if (s.samples[ii] != whole.samples[ki]) return item + "sample";
      if (s.widths[ii] != whole.widths[ki] || s.heights[ii] != whole.heights[ki]) return item + "original size";
      if (!same_object_lists(s.objects[ii], whole.objects[ki])) return item + "objects";
      if (item_bytes(s.images, i) != item_bytes(whole.images, k)) return item + "pixels";
    }
  }
  if (k != whole.size()) return "the shards hold " + std::to_string(k) + " of " + std::to_string(whole.size()) + " items";
  return "";
}

}  // namespace

TEST_CASE("loader shards: the shards of a global batch are the single-process batch", "[data][loader][shard]") {
  const data::Dataset& ds = clean_dataset();
  for (bool u8 : {false, true}) {
    for (int workers : {0, 2}) {
      data::LoaderOptions o = base_options();
      o.input_sizes = {64, 96, 80};  // multiscale: the draw must follow the global batch number
      o.uint8_images = u8;
      o.workers = workers;
      o.start_batch = 3;                                   // resumed mid-epoch: 5 batches per epoch
      const int count = 8;                                 // batches 3..10: three epochs
      data::Loader single(ds, o);
      REQUIRE(single.batches_per_epoch() == kImages / o.batch_size);
      const std::vector<data::Batch> whole = take(single, count);
      std::set<int> sizes;
      for (const data::Batch& b : whole) {
        REQUIRE(b.size() == o.batch_size);
        sizes.insert(b.input_size);
      }
      CHECK(sizes.size() > 1);  // the multiscale draw really varies over these batches

      for (int world : {2, 4}) {
        std::vector<std::vector<data::Batch>> per_rank;
        for (int rank = 0; rank < world; ++rank) {
          data::LoaderOptions r = o;
          r.shard_rank = rank;
          r.shard_count = world;
          data::Loader loader(ds, r);
          CHECK(loader.batches_per_epoch() == single.batches_per_epoch());  // a function of the global batch
          per_rank.push_back(take(loader, count));
          CHECK(loader.take_warnings().empty());
        }
        for (int g = 0; g < count; ++g) {
          INFO("u8 " << u8 << " workers " << workers << " world " << world << " batch " << whole[g].number);
          std::vector<data::Batch> shards;
          for (int rank = 0; rank < world; ++rank) {
            CHECK(per_rank[rank][g].size() == o.batch_size / world);
            shards.push_back(per_rank[rank][g]);
          }
          CHECK(union_difference(whole[static_cast<size_t>(g)], shards) == "");
        }
      }
    }
  }
}

TEST_CASE("loader shards: a global batch larger than the dataset", "[data][loader][shard]") {
  // 40 images, global batch 48 over 4 ranks (12 each): one batch of the 40 images per
  // epoch; ranks 0..2 take 12 each, rank 3 the last 4.
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();
  o.augment.photometric = o.augment.expand = o.augment.crop = false;  // keep it quick
  o.batch_size = 48;
  data::Loader single(ds, o);
  const std::vector<data::Batch> whole = take(single, 2);
  std::vector<std::vector<data::Batch>> per_rank;
  for (int rank = 0; rank < 4; ++rank) {
    data::LoaderOptions r = o;
    r.shard_rank = rank;
    r.shard_count = 4;
    data::Loader loader(ds, r);
    per_rank.push_back(take(loader, 2));
  }
  for (int g = 0; g < 2; ++g) {
    INFO("batch " << g);
    CHECK(whole[g].size() == kImages);
    CHECK(per_rank[3][g].size() == 4);
    CHECK(union_difference(whole[g], {per_rank[0][g], per_rank[1][g], per_rank[2][g], per_rank[3][g]}) == "");
  }
}

TEST_CASE("loader shards: option errors", "[data][loader][shard]") {
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();
  o.batch_size = 6;
  o.shard_count = 4;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("global batch size 6 is not divisible by the shard count 4"));
  o = base_options();
  o.shard_count = 0;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("shard count must be at least 1"));
  o = base_options();
  o.shard_count = 2;
  o.shard_rank = 2;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("shard rank 2 out of range 0..1"));
  o.shard_rank = -1;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("shard rank -1"));
  o = base_options();
  o.train = false;
  o.shard_count = 2;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("shard_samples"));

  CHECK_THROWS_AS(data::shard_range(6, 0, 4), eng::Error);
  CHECK_THROWS_AS(data::shard_range(0, 0, 1), eng::Error);
  CHECK_THROWS_AS(data::shard_range(8, 4, 4), eng::Error);
  CHECK(data::shard_range(8, 3, 4).begin == 6);
  CHECK(data::shard_range(8, 3, 4).end == 8);
  CHECK(data::shard_range(8, 0, 1).end == 8);
}

TEST_CASE("loader shards: empty shards are handed out, never skipped", "[data][loader][shard]") {
  const data::Dataset& ds = clean_dataset();
  test::TempDir dir("loader_shard_bad");
  data::LoaderOptions o = base_options();
  o.augment.photometric = o.augment.expand = o.augment.crop = false;
  o.batch_size = 4;  // 2 ranks x 2
  // The epoch order does not depend on the pixels: read batch 0's samples off a clean run.
  std::vector<int> first;
  {
    data::Loader clean(ds, o);
    first = take(clean, 1)[0].samples;
    REQUIRE(first.size() == 4);
  }
  auto spoil = [&](std::vector<int> which) {
    data::Dataset bad = ds;
    for (int i : which) {
      bad.samples[static_cast<size_t>(i)].image_path = dir / ("bad" + std::to_string(i) + ".jpg");
      test::write_file(bad.samples[static_cast<size_t>(i)].image_path, "not an image");
    }
    return bad;
  };
  for (int workers : {0, 2}) {
    INFO("workers " << workers);
    {
      // Rank 0's half of batch 0 is bad: rank 0 gets batch 0 empty, rank 1 its half, and
      // together they are the single process's (smaller) batch 0.
      const data::Dataset bad = spoil({first[0], first[1]});
      data::LoaderOptions s = o;
      s.workers = workers;
      s.pinned = workers > 0;  // an empty pinned batch too
      data::Loader single(bad, s);
      const std::vector<data::Batch> whole = take(single, 2);
      CHECK(whole[0].number == 0);
      CHECK(whole[0].size() == 2);
      std::vector<std::vector<data::Batch>> per_rank;
      for (int rank = 0; rank < 2; ++rank) {
        data::LoaderOptions r = s;
        r.shard_rank = rank;
        r.shard_count = 2;
        data::Loader loader(bad, r);
        per_rank.push_back(take(loader, 2));
        CHECK(loader.take_warnings().size() == (rank == 0 ? 2u : 0u));
      }
      CHECK(per_rank[0][0].number == 0);
      CHECK(per_rank[0][0].size() == 0);
      CHECK(per_rank[0][0].images.sizes() == eng::Shape{0, 3, 64, 64});
      CHECK(per_rank[1][0].size() == 2);
      for (int g = 0; g < 2; ++g) {
        INFO("batch " << g);
        CHECK(union_difference(whole[g], {per_rank[0][g], per_rank[1][g]}) == "");
      }
    }
    {
      // The whole of batch 0 is bad: one process skips it (its first batch is number 1);
      // each rank hands out an empty batch 0, then batch 1.
      const data::Dataset bad = spoil(first);
      data::LoaderOptions s = o;
      s.workers = workers;
      data::Loader single(bad, s);
      const data::Batch b1 = take(single, 1)[0];
      CHECK(b1.number == 1);
      for (int rank = 0; rank < 2; ++rank) {
        data::LoaderOptions r = s;
        r.shard_rank = rank;
        r.shard_count = 2;
        data::Loader loader(bad, r);
        const std::vector<data::Batch> got = take(loader, 2);
        CHECK(got[0].number == 0);
        CHECK(got[0].size() == 0);
        CHECK(got[1].number == 1);
        CHECK(got[1].size() == 2);
        CHECK(got[1].samples == std::vector<int>(b1.samples.begin() + 2 * rank, b1.samples.begin() + 2 * rank + 2));
      }
    }
  }
  // Every image bad: each rank still fails (once it has met every image) instead of
  // handing out empty batches forever.
  data::Dataset all_bad = ds;
  all_bad.samples.resize(3);
  for (int i = 0; i < 3; ++i) {
    all_bad.samples[static_cast<size_t>(i)].image_path = dir / ("all" + std::to_string(i) + ".jpg");
    test::write_file(all_bad.samples[static_cast<size_t>(i)].image_path, "not an image");
  }
  for (int rank = 0; rank < 2; ++rank) {
    data::LoaderOptions r = o;
    r.batch_size = 2;
    r.shard_rank = rank;
    r.shard_count = 2;
    data::Loader loader(all_bad, r);
    bool threw = false;
    for (int i = 0; i < 500 && !threw; ++i) {
      data::Batch b;
      bool got = false;
      try {
        got = loader.next(b);  // not inside REQUIRE: Catch would take the exception
      } catch (const eng::Error& e) {
        CHECK_THAT(e.what(), Contains("every image of the dataset failed"));
        threw = true;
        break;
      }
      REQUIRE(got);
      CHECK(b.size() == 0);
      CHECK(b.number == i);
    }
    CHECK(threw);
  }
}

// resume_batch by its definition: the first batch of the new numbering whose (epoch, first
// position in the epoch) is not before the old run's (epoch, samples consumed).
int64_t resume_by_search(int64_t next, int64_t old_b, int64_t new_b, int64_t n) {
  const int64_t old_bpe = std::max<int64_t>(1, n / old_b), new_bpe = std::max<int64_t>(1, n / new_b);
  const int64_t e = next / old_bpe, p = (next % old_bpe) * old_b;
  for (int64_t g = 0;; ++g) {
    const int64_t ge = g / new_bpe, gp = (g % new_bpe) * new_b;
    if (ge > e || (ge == e && gp >= p)) return g;
  }
}

TEST_CASE("loader shards: resume_batch continues from the same epoch position", "[data][loader][shard]") {
  // Identity with an unchanged global batch.
  for (int64_t g : {0, 1, 4, 5, 123456})
    for (int64_t b : {1, 8, 16, 40, 64}) CHECK(data::resume_batch(g, b, b, kImages) == g);
  // 16 -> 8 on 40 images (2 and 5 batches per epoch; 8 samples dropped per 16-epoch).
  CHECK(data::resume_batch(1, 16, 8, 40) == 2);  // 16 consumed: positions 16.. = batch 2
  CHECK(data::resume_batch(2, 16, 8, 40) == 5);  // epoch 1 start
  CHECK(data::resume_batch(3, 16, 8, 40) == 7);
  // 8 -> 16 (5 and 2 batches per epoch).
  CHECK(data::resume_batch(1, 8, 16, 40) == 1);  // 8 consumed: rounded up to 16
  CHECK(data::resume_batch(2, 8, 16, 40) == 1);  // 16 consumed: exact boundary
  CHECK(data::resume_batch(3, 8, 16, 40) == 2);  // 24 consumed: only the dropped tail is left
  CHECK(data::resume_batch(4, 8, 16, 40) == 2);  // 32 consumed: the same
  CHECK(data::resume_batch(5, 8, 16, 40) == 2);  // epoch 1 start
  CHECK(data::resume_batch(6, 8, 16, 40) == 3);
  CHECK(data::resume_batch(10, 8, 16, 40) == 4);
  // Batches larger than the dataset: one batch per epoch either way.
  CHECK(data::resume_batch(3, 64, 48, 40) == 3);
  CHECK(data::resume_batch(3, 8, 64, 40) == 1);  // epoch 0, 24 consumed: next epoch
  // Against the definition, over many sizes.
  for (int64_t n : {1, 7, 40, 41})
    for (int64_t old_b : {1, 3, 6, 8, 16, 50})
      for (int64_t new_b : {1, 2, 4, 8, 12, 16, 64})
        for (int64_t next = 0; next < 60; ++next) {
          INFO("n " << n << " old " << old_b << " new " << new_b << " next " << next);
          CHECK(data::resume_batch(next, old_b, new_b, n) == resume_by_search(next, old_b, new_b, n));
        }
  // Bad arguments.
  CHECK_THROWS_AS(data::resume_batch(-1, 8, 16, 40), eng::Error);
  CHECK_THROWS_AS(data::resume_batch(1, 0, 16, 40), eng::Error);
  CHECK_THROWS_AS(data::resume_batch(1, 8, 0, 40), eng::Error);
  CHECK_THROWS_AS(data::resume_batch(1, 8, 16, 0), eng::Error);
  CHECK_THROWS_WITH(data::resume_batch(INT64_MAX, 1000, 1, 1000), Contains("64 bits"));
}

TEST_CASE("loader shards: a run resumed at another global batch continues the epoch's samples",
          "[data][loader][shard]") {
  // The old run (global 16) did batch 0 and stops; the new run (global 8, 2 ranks x 4)
  // starts at resume_batch(1, 16, 8): its batches cover exactly what a global-16 run's batch
  // 1 would have taken (positions 16..31 of epoch 0), with the same pixels per sample.
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();
  o.batch_size = 16;
  data::LoaderOptions old_run = o;
  old_run.start_batch = 1;
  data::Loader old_loader(ds, old_run);
  const data::Batch old_b1 = take(old_loader, 1)[0];

  const int64_t start = data::resume_batch(1, 16, 8, kImages);
  REQUIRE(start == 2);
  std::vector<int> samples;
  std::vector<std::string> pixels;
  for (int64_t g = start; g < start + 2; ++g) {
    for (int rank = 0; rank < 2; ++rank) {
      data::LoaderOptions r = o;
      r.batch_size = 8;
      r.shard_rank = rank;
      r.shard_count = 2;
      r.start_batch = g;
      data::Loader loader(ds, r);
      const data::Batch b = take(loader, 1)[0];
      CHECK(b.epoch == 0);
      for (int64_t i = 0; i < b.size(); ++i) {
        samples.push_back(b.samples[static_cast<size_t>(i)]);
        pixels.push_back(item_bytes(b.images, i));
      }
    }
  }
  CHECK(samples == old_b1.samples);
  for (size_t i = 0; i < pixels.size() && i < samples.size(); ++i) {
    INFO("item " << i);
    CHECK(pixels[i] == item_bytes(old_b1.images, static_cast<int64_t>(i)));
  }
}

TEST_CASE("loader shards: strided evaluation shards give the single-process evaluation", "[data][loader][shard]") {
  const data::Dataset& ds = clean_dataset();
  // Indices and samples.
  CHECK(data::shard_indices(7, 0, 3) == std::vector<int>{0, 3, 6});
  CHECK(data::shard_indices(7, 2, 3) == std::vector<int>{2, 5});
  CHECK(data::shard_indices(2, 2, 3).empty());
  CHECK_THROWS_AS(data::shard_indices(7, 3, 3), eng::Error);
  CHECK_THROWS_AS(data::shard_indices(-1, 0, 3), eng::Error);
  CHECK_THROWS_AS(data::shard_samples(ds, 0, 0), eng::Error);
  CHECK_THROWS_AS(data::shard_samples(ds, -1, 2), eng::Error);
  CHECK(data::shard_samples(ds, 50, 64).samples.empty());

  data::LoaderOptions o = base_options();
  o.train = false;
  o.batch_size = 4;
  o.input_sizes = {64, 80};
  data::Loader single(ds, o);
  std::vector<std::vector<std::string>> expected(kImages);  // per dataset index: one item per size
  data::Batch b;
  while (single.next(b))
    for (int64_t i = 0; i < b.size(); ++i)
      for (const eng::Tensor& t : b.images_at) expected[b.samples[static_cast<size_t>(i)]].push_back(item_bytes(t, i));

  const int world = 3;
  std::vector<int> seen(kImages, 0);
  for (int rank = 0; rank < world; ++rank) {
    const data::Dataset shard = data::shard_samples(ds, rank, world);
    const std::vector<int> index = data::shard_indices(static_cast<int64_t>(ds.samples.size()), rank, world);
    REQUIRE(shard.samples.size() == index.size());
    CHECK(shard.samples.size() == static_cast<size_t>(rank < kImages % world ? 14 : 13));
    CHECK(shard.class_names == ds.class_names);
    CHECK(shard.category_ids == ds.category_ids);
    for (size_t j = 0; j < index.size(); ++j) {
      CHECK(index[j] % world == rank);
      CHECK(shard.samples[j].key == ds.samples[static_cast<size_t>(index[j])].key);
      CHECK(shard.samples[j].image_path == ds.samples[static_cast<size_t>(index[j])].image_path);
      CHECK(shard.samples[j].objects.size() == ds.samples[static_cast<size_t>(index[j])].objects.size());
    }
    data::LoaderOptions r = o;
    r.workers = rank == 1 ? 2 : 0;
    data::Loader loader(shard, r);
    while (loader.next(b)) {
      for (int64_t i = 0; i < b.size(); ++i) {
        const int d = index[static_cast<size_t>(b.samples[static_cast<size_t>(i)])];  // shard -> dataset index
        ++seen[d];
        std::vector<std::string> got;
        for (const eng::Tensor& t : b.images_at) got.push_back(item_bytes(t, i));
        INFO("rank " << rank << " dataset index " << d);
        CHECK(got == expected[d]);
      }
    }
  }
  CHECK(seen == std::vector<int>(kImages, 1));  // every sample evaluated exactly once
}
