// The CPU convolution's col-workspace budget (engine/src/ops/conv2d.cpp's im2col path).
//
// On the CPU the im2col path runs in bands of output rows whose col matrix fits this many
// bytes (kernels/conv2d_banded.h). Default 16 MiB; the environment variable
// ENGINE_CPU_CONV_CHUNK_MB (an integer 0 .. 4096, read once) sets it, and 0 selects the
// whole-image reference (kern::cpu::conv2d_forward / conv2d_backward, one col matrix per
// image) that every faster path is tested against. A malformed value is a one-line
// eng::Error naming the variable and the value, raised by the first CPU convolution.
#pragma once
#include <cstddef>

namespace eng::detail {

constexpr size_t kDefaultConvColBudget = size_t(16) << 20;

// The budget in bytes (0 = whole-image reference).
size_t conv_col_budget();
// Tests and benches: override the budget for this process (until reset_conv_col_budget()).
void set_conv_col_budget(size_t bytes);
void reset_conv_col_budget();  // back to the environment's value / the default

}  // namespace eng::detail
