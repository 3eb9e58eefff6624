// SyncBatchNorm (`--sync-bn`, issue 13): batch statistics over the whole global batch of a
// data-parallel run instead of each rank's shard.
//
// In training, with dist::current() of size > 1, per channel c over every rank's x[N, C, H, W]:
//   n    = sum over ranks of N*H*W                     (all-reduced, f64)
//   mean = (sum over ranks of sum x) / n               (all_reduce_sum #1, sums in f64)
//   var  = (sum over ranks of sum (x - mean)^2) / n    (all_reduce_sum #2, biased; two passes,
//                                                       no E[x^2] - E[x]^2 cancellation)
//   y    = (x - mean) * weight / sqrt(var + eps) + bias
// The sums go through dist::all_reduce_sum, which is differentiable (its backward
// all-reduces the gradient), so the gradient of x, weight and bias is exactly that of
// batch_norm2d on the concatenated batch: weight and bias get this rank's share, which the
// gradient all-reduce of data parallelism then sums. Running stats: (1 - momentum) running +
// momentum * (mean, var * n / (n - 1)), the same on every rank. Composed of existing
// differentiable ops (no kernel of its own); two collectives forward, two backward per layer.
// Otherwise (eval mode, current() null or of size 1) it IS batch_norm2d, bit for bit.
// Every rank must call it the same number of times in the same order (the same model).
// f32, f64, bf16 (computed in f32, as batch_norm2d does).
#pragma once
#include "engine/nn/module.h"
#include "engine/tensor.h"

namespace eng::dist {

Tensor sync_batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                         Tensor running_var, bool training, double momentum = 0.1, double eps = 1e-5);

// Sets `sync` on every nn::BatchNorm2d of `module` (torch.nn.SyncBatchNorm.convert_sync_batchnorm
// in place); returns how many layers it switched.
int convert_sync_batchnorm(nn::Module& module);

}  // namespace eng::dist
