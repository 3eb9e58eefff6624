// The "awkward" synthetic preset (`ssd_data synth --preset awkward`): a Pascal VOC set that
// a new user's own data might look like, for checking that training stays stable
// (docs/synthetic-data.md#the-awkward-preset, issue 18 item 6):
//   * small, low-contrast objects (4%-14% of the shorter side, colour mixed 35% toward the
//     background under the box) on the usual cluttered backgrounds, 2..8 per image;
//   * planted annotation faults, each a fixed function of the image number:
//       image 1 (and every 25th after it) has no object at all;
//       every 5th image: a zero-area box (xmin == xmax), which the reader skips with a warning;
//       every 7th image: a real object's box reaching 1 px past the right border (the reader's
//         tolerance clips it) and a second box far past the border (skipped with a warning);
//       every 3rd image: 1-3 tiny (1-3 px) objects marked difficult (not training targets).
// The pixels come from render_scene (synth.h); only the options and the XML differ.
#pragma once
#include <cstdint>
#include <string>

#include "data/synth.h"

namespace data {

// The scene options of the preset for a width x height image with k classes.
SynthOptions awkward_synth_options(int width, int height, int num_classes);

// Writes `n` images (split `split`) and `n_val` more (split "test") in the VOC layout, as
// write_synth_dataset does, with the preset's options and planted faults. Returns the same
// summary (objects counted are the real, drawn ones). Throws eng::Error as write_synth_dataset.
SynthSummary write_awkward_voc_dataset(const std::string& out_dir, int n, int n_val, uint64_t seed, int width,
                                       int height, int num_classes, const std::string& split = "trainval");

}  // namespace data
