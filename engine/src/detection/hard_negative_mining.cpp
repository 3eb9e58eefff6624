// Front-end of eng::det::hard_negative_mining (maths, order and tie rules in
// kernels/include/kernels/hard_negative_mining.h). Not differentiable: it returns a mask.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "kernels/hard_negative_mining.h"

namespace eng::det {
using namespace detail;

Tensor hard_negative_mining(const Tensor& loss_in, const Tensor& labels_in, double ratio, int64_t min_negatives) {
  const char* op = "hard_negative_mining";
  check_dim(op, loss_in, 2, "loss");
  check_floating(op, loss_in);
  check_dim(op, labels_in, 2, "labels");
  ENGINE_CHECK(labels_in.dtype() == DType::i64, op, ": labels must be i64, got ", dtype_name(labels_in.dtype()));
  ENGINE_CHECK(labels_in.sizes() == loss_in.sizes(), op, ": labels ", shape_str(labels_in.sizes()),
               " and loss ", shape_str(loss_in.sizes()), " differ in shape");
  ENGINE_CHECK(labels_in.device() == loss_in.device(), op, ": loss is on ", loss_in.device().str(),
               " but labels on ", labels_in.device().str());
  ENGINE_CHECK(std::isfinite(ratio) && ratio >= 0, op, ": ratio ", ratio, " must be finite and >= 0");
  ENGINE_CHECK(min_negatives >= 0, op, ": min_negatives ", min_negatives, " must be >= 0");

  Tensor loss = loss_in.detach().contiguous();
  Tensor labels = labels_in.detach().contiguous();
  const kern::MiningDims d{loss.size(0), loss.size(1)};
  ENGINE_CHECK(d.A < (int64_t(1) << 31), op, ": ", d.A, " anchors per image is too many (at most 2^31 - 1)");
  Tensor mask = empty({d.B, d.A}, TensorOptions(DType::u8).device(loss.device()));
  dispatch_float(loss, op, [&](auto tag) {
    using T = decltype(tag);
    if (loss.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::hard_negative_mining<T>(d, loss.data<T>(), labels.data<int64_t>(), ratio,
                                                         min_negatives, mask.data<uint8_t>(), cuda::stream()));
    } else {
      kern::cpu::hard_negative_mining<T>(d, loss.data<T>(), labels.data<int64_t>(), ratio, min_negatives,
                                         mask.data<uint8_t>());
    }
  });
  return mask;
}

}  // namespace eng::det
