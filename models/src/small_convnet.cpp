#include "models/small_convnet.h"

namespace models {
using namespace eng;

SmallConvNet::SmallConvNet(int64_t in_channels, int64_t num_classes, int64_t image_size, int64_t c1, int64_t c2)
    : Module("SmallConvNet") {
  ENGINE_CHECK(image_size % 4 == 0, "SmallConvNet: image size must be a multiple of 4, got ", image_size);
  features_ = register_module("features", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(in_channels, c1, 3, 1, 1), std::make_shared<nn::BatchNorm2d>(c1),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Conv2d>(c1, c2, 3, 1, 1), std::make_shared<nn::BatchNorm2d>(c2),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2)}));
  const int64_t s = image_size / 4;
  classifier_ = register_module("classifier", std::make_shared<nn::Linear>(c2 * s * s, num_classes));
}

Tensor SmallConvNet::forward(const Tensor& x) {
  Tensor f = features_->forward(x);
  return classifier_->forward(f.flatten(1));
}

}  // namespace models
