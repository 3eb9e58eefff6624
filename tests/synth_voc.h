// The small generated VOC dataset the app tests train on: 96 x 80 images of 3 shape classes
// (data/synth.h), written once per process into a temporary folder that is removed at exit.
//
//   const std::string& dataset_root() {
//     static const test::SynthVoc d("my_test_data", 8, 2, 17);  // 8 trainval + 2 test, seed 17
//     return d.root;
//   }
#pragma once
#include <cstdint>
#include <string>

#include "data/synth.h"
#include "temp_dir.h"

namespace test {

struct SynthVoc {
  TempDir dir;
  std::string root;
  SynthVoc(const std::string& tag, int n, int val, uint64_t seed) : dir(tag), root(dir.path.string()) {
    data::SynthOptions o;
    o.width = 96;
    o.height = 80;
    o.num_classes = 3;
    data::write_synth_dataset(root, data::SynthFormat::Voc, n, val, seed, o);
  }
};

}  // namespace test
