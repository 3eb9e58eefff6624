// The deterministic parameter formula shared with tools/parity_init.py, so a model and its
// torchvision twin get identical values without any weight file being committed.
//
// Tensors are visited in state_dict() order; tensor k (0-based) of shape S gets, for its
// flat index i, with u = sin(0.37 (i + 1) + 0.11 (k + 1)):
//   name ends with "num_batches_tracked"   -> 0
//   name ends with "running_var"           -> 1 + 0.5 |u|
//   name ends with "running_mean"          -> 0.1 u
//   name ends with "scale_weight"          -> 20 + u              (SSD L2Norm scale)
//   1-d tensor named "*.weight"            -> 1 + 0.1 u           (norm weights)
//   any other 1-d tensor (biases)          -> 0.05 u
//   tensors of 2 or more dims              -> u * sqrt(3 / fan_in), fan_in = numel / S[0]
// (the last keeps activations at a steady scale through deep nets, as a uniform Kaiming
// init would). Computed in double, stored in the tensor's dtype.
#pragma once
#include <string>

#include "engine/nn/module.h"

namespace models {

double parity_value(const std::string& name, const eng::Shape& shape, int64_t tensor_index, int64_t flat_index);
// Overwrites every parameter and buffer of `model` with the formula (under NoGradGuard).
void parity_init(eng::nn::Module& model);

}  // namespace models
