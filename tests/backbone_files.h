// Stand-ins for torchvision's ImageNet classifier files, built from their key/shape lists
// (tests/fixtures/backbone_keys, written by tools/make_backbone_key_lists.py; no weights are
// downloaded or stored). The n-th float tensor is filled with 0.001 * (n + 1), an i64 one with
// n + 1, so a test can see where each tensor landed.
#pragma once
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace test {

// model: vgg16, resnet50 or mobilenet_v3_large; state_dict order.
inline std::vector<std::pair<std::string, eng::Tensor>> torchvision_state(const std::string& model) {
  const std::string path = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/backbone_keys/" + model + ".txt";
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<std::pair<std::string, eng::Tensor>> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string key, dtype, dims;
    ls >> key >> dtype >> dims;
    eng::Shape shape;
    std::istringstream ds(dims);
    for (std::string d; std::getline(ds, d, ',');) shape.push_back(std::stoll(d));
    const double n = static_cast<double>(out.size() + 1);
    out.emplace_back(key, dtype == "i64" ? eng::full(shape, n, eng::DType::i64) : eng::full(shape, 0.001 * n));
  }
  REQUIRE(!out.empty());
  return out;
}

}  // namespace test
