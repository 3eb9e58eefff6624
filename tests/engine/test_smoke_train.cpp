// Smoke test: conv-bn-relu-pool x2 + linear, SGD, generated data, CPU, > 95% accuracy.
#include "models/shapes_demo.h"
#include "test_helpers.h"

TEST_CASE("smoke: small conv net learns generated shapes on the cpu") {
  models::ShapesDemoConfig cfg;  // the demo's defaults
  double first_loss = -1;
  auto r = models::train_shapes_demo(cfg, [&](int64_t, double loss, double) {
    if (first_loss < 0) first_loss = loss;
  });
  INFO("first loss " << first_loss << ", final loss " << r.final_loss << ", test accuracy " << r.test_accuracy);
  REQUIRE(r.final_loss < first_loss * 0.5);
  REQUIRE(r.train_accuracy > 0.95);
  REQUIRE(r.test_accuracy > 0.95);  // held-out images: generalisation, not memorisation
  // features: conv(1->8) 72+8, bn 16, conv(8->16) 1152+16, bn 32; classifier 16*4*4*4 + 4.
  REQUIRE(r.parameters == 80 + 16 + 1168 + 32 + 1028);
}

TEST_CASE("smoke: training is reproducible from the seed") {
  models::ShapesDemoConfig cfg;
  cfg.iters = 20;
  cfg.train_images = 256;
  cfg.test_images = 64;
  auto a = models::train_shapes_demo(cfg);
  auto b = models::train_shapes_demo(cfg);
  REQUIRE(a.final_loss == b.final_loss);
  REQUIRE(a.test_accuracy == b.test_accuracy);
}
