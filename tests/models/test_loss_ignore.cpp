// Difficult / crowd objects as ignored targets (models::Targets::ignore): the anchors an
// ignored GT claims in the matching are neither positive nor negative. Before, such objects
// were dropped from the targets, so the anchors covering them were background and, with a
// confident prediction there (the detector is right to see an object), the hardest mined
// negatives. Checked on TinySSD, SSD300, SSDlite (models::ssd_multibox_loss) and RetinaNet
// through their real losses, the SSDs also under the bipartite matcher: the
// gradient at those anchors is exactly zero when ignored and not zero when dropped, and
// the positives (box term) are the same either way.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/detection.h"
#include "models/detection_model.h"
#include "models/factories.h"
#include "test_helpers.h"

using namespace eng;

namespace {

std::shared_ptr<models::DetectionModel> build(const std::string& arch, int64_t classes, int64_t size,
                                              const std::string& matcher) {
  manual_seed(5);
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = classes;
  c.input_size = size;
  c.matcher = matcher;
  if (arch == "tiny_ssd") return models::make_tiny_ssd(c);
  if (arch == "retinanet_resnet50_fpn") return models::make_retinanet(c);
  if (arch == "ssdlite320_mobilenet_v3_large") return models::make_ssdlite(c);
  return models::make_ssd_vgg16(c);
}

struct Outcome {
  double cls = 0, box = 0;
  Tensor g_cls;  // [1, A, C] on the CPU
};

Outcome run(models::DetectionModel& model, const Tensor& reg, const Tensor& cls, const models::Targets& t) {
  models::HeadOutputs h;
  h.box_regression = test::cpu_leaf(reg);
  h.class_logits = test::cpu_leaf(cls);
  models::LossParts l = model.loss(h, t);
  l.total.backward();
  return {l.classification.item(), l.box_regression.item(), h.class_logits.grad()};
}

void check_arch(const std::string& arch, const std::string& matcher = "") {
  const bool retina = arch == "retinanet_resnet50_fpn";
  const bool lite = arch == "ssdlite320_mobilenet_v3_large";
  const int64_t classes = arch == "tiny_ssd" ? 4 : (retina ? 6 : 21);
  const int64_t size = arch == "tiny_ssd" ? 64 : (retina ? 128 : (lite ? 320 : 300));
  auto model = build(arch, classes, size, matcher);
  const double s = static_cast<double>(size);
  // One image: GT 0 (a plain object) on the left, GT 1 (difficult) on the right, apart.
  models::Targets both;
  both.boxes = from_vector<float>({float(0.05 * s), float(0.1 * s), float(0.4 * s), float(0.5 * s),  //
                                   float(0.55 * s), float(0.45 * s), float(0.95 * s), float(0.9 * s)},
                                  {1, 2, 4});
  both.labels = from_vector<int64_t>({1, 2}, {1, 2});
  both.counts = from_vector<int64_t>({2}, {1});
  models::Targets ignored = both;
  ignored.ignore = from_vector<uint8_t>({0, 1}, {1, 2});
  models::Targets dropped = both;  // the old behaviour: GT 1 left out
  dropped.counts = from_vector<int64_t>({1}, {1});

  // The anchors GT 1 claims when it takes part in the matching.
  Tensor anc = model->anchors(Device::cpu());
  const int64_t A = anc.size(0), C = classes;
  Tensor iou = det::box_iou_batched(both.boxes, both.counts, anc);
  const std::vector<int64_t> m = (retina ? det::match_retinanet(iou, both.counts, 0.5, 0.4, true)
                                         : det::match_anchors(iou, both.counts,
                                                              matcher == "bipartite" ? det::MatchRule::bipartite
                                                                                     : det::MatchRule::ssd,
                                                              0.5))
                                     .to_vector<int64_t>();
  std::vector<int64_t> claimed;
  int64_t positives = 0;
  for (int64_t a = 0; a < A; ++a) {
    if (m[static_cast<size_t>(a)] == 1) claimed.push_back(a);
    positives += m[static_cast<size_t>(a)] == 0 ? 1 : 0;
  }
  REQUIRE(!claimed.empty());
  REQUIRE(positives > 0);

  // Heads: mild random logits, except that the claimed anchors predict "object, class 2"
  // with confidence (background logit -8 for the SSDs; class logits +6 for RetinaNet).
  Tensor reg = test::random_f32({1, A, 4}, 11, -1, 1);
  std::vector<float> v = test::random_f32({1, A, C}, 12, -1, 1).to_vector<float>();
  for (int64_t a : claimed)
    for (int64_t c = 0; c < C; ++c) v[static_cast<size_t>(a * C + c)] = retina ? 6.f : (c == 0 ? -8.f : 2.f);
  Tensor cls = from_vector(v, {1, A, C});

  const Outcome ign = run(*model, reg, cls, ignored);
  const Outcome drp = run(*model, reg, cls, dropped);
  const std::vector<float> gi = ign.g_cls.to_vector<float>(), gd = drp.g_cls.to_vector<float>();
  double max_ign = 0, max_drp = 0;
  for (int64_t a : claimed)
    for (int64_t c = 0; c < C; ++c) {
      max_ign = std::max(max_ign, std::fabs(double(gi[static_cast<size_t>(a * C + c)])));
      max_drp = std::max(max_drp, std::fabs(double(gd[static_cast<size_t>(a * C + c)])));
    }
  INFO(arch << " (matcher '" << matcher << "'): " << claimed.size() << " anchors claimed by the ignored GT, " << positives << " positives");
  CHECK(max_ign == 0);  // ignored: no loss, not mined, no gradient
  CHECK(max_drp > 0);   // dropped: background, mined as the hardest negatives
  CHECK(ign.cls < drp.cls);
  // The positives of GT 0 are the same either way: the same box term.
  CHECK(ign.box == Approx(drp.box).epsilon(1e-6));
  CHECK(ign.box > 0);
}

}  // namespace

TEST_CASE("ignored GTs: tiny_ssd gives the anchors they claim neither positive nor negative loss",
          "[models][loss]") {
  check_arch("tiny_ssd");
}

TEST_CASE("ignored GTs: ssd300_vgg16 gives the anchors they claim neither positive nor negative loss",
          "[models][loss]") {
  check_arch("ssd300_vgg16");
}

TEST_CASE("ignored GTs: retinanet gives the anchors they claim neither positive nor negative loss",
          "[models][loss]") {
  check_arch("retinanet_resnet50_fpn");
}

TEST_CASE("ignored GTs: ssdlite320 (ssd_multibox_loss) gives the anchors they claim neither positive nor negative loss",
          "[models][loss]") {
  check_arch("ssdlite320_mobilenet_v3_large");
}

TEST_CASE("ignored GTs: the bipartite matcher honours them too (ssd300_vgg16, ssdlite320, tiny_ssd)",
          "[models][loss]") {
  check_arch("ssd300_vgg16", "bipartite");
  check_arch("ssdlite320_mobilenet_v3_large", "bipartite");
  check_arch("tiny_ssd", "bipartite");
}
