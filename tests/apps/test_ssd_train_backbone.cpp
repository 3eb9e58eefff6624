// ssd_train --backbone through the program: a torchvision mobilenet_v3_large stand-in (names
// and shapes from tests/backbone_files.h) trains ssdlite320_mobilenet_v3_large with the full
// tail, the checkpoint records it, ssd_detect and --resume rebuild it; a file of another layout
// and an architecture without an ImageNet backbone are one line and exit 1.
#include <filesystem>
#include <string>

#include "app_runner.h"
#include "backbone_files.h"
#include "data/synth.h"
#include "engine/io/safetensors.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using test::TempDir;

namespace {

struct Files {
  TempDir dir{"ssd_train_backbone"};
  std::string data, mobilenet, resnet;
  Files() {
    data::SynthOptions o;
    o.width = 96;
    o.height = 80;
    o.num_classes = 2;
    data::write_synth_dataset((dir / "data"), data::SynthFormat::Voc, 6, 0, 5, o);
    data = dir / "data";
    mobilenet = dir / "mobilenet_v3_large.safetensors";
    resnet = dir / "resnet50.safetensors";
    eng::io::save_safetensors(mobilenet, test::torchvision_state("mobilenet_v3_large"));
    eng::io::save_safetensors(resnet, test::torchvision_state("resnet50"));
  }
};

const Files& files() {
  static Files f;
  return f;
}

std::string train_args(const std::string& arch, const std::string& out) {
  return "--arch " + arch + " --data '" + files().data + "' --input-size 96 --batch 2 --workers 1 --warmup 1 --lr 0.01 --out '" +
         out + "'";
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

}  // namespace

TEST_CASE("ssd_train --backbone: mobilenet_v3_large weights give SSDlite the full tail, kept by the checkpoint",
          "[apps][ssd_train][backbone][ssdlite]") {
  TempDir out("bb_train"), det("bb_detect");
  auto r = test::run_app("ssd_train", train_args("ssdlite320_mobilenet_v3_large", out.path.string()) +
                                          " --iters 2 --backbone '" + files().mobilenet + "'");
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("(torchvision mobilenet_v3_large): loaded 308, skipped 4 (not backbone 4), model keys not loaded 0") !=
        std::string::npos);
  // torchvision's 5,198,540 at 91 classes, less the class heads' 88 * 6 * (672+960+512+256+256+128 + 6).
  CHECK(r.out.find("model: ssdlite320_mobilenet_v3_large, 3725420 parameters") != std::string::npos);
  auto ck = eng::io::load_safetensors(out / "last.safetensors");
  CHECK(ck.metadata.at("backbone_tail") == "full");
  CHECK(ck.get("backbone.features.1.3.0.weight").sizes() == eng::Shape{960, 160, 1, 1});
  // ssd_detect and --resume rebuild the full tail from the metadata.
  auto d = test::run_app("ssd_detect", "--weights '" + (out / "last.safetensors") + "' --input '" + files().data +
                                           "/JPEGImages' --out '" + det.path.string() + "' --workers 1");
  INFO(d.err);
  CHECK(d.status == 0);
  auto res = test::run_app("ssd_train", train_args("ssdlite320_mobilenet_v3_large", out.path.string()) +
                                            " --iters 3 --resume '" + (out / "last.safetensors") + "'");
  INFO(res.err);
  CHECK(res.status == 0);
  CHECK(eng::io::load_safetensors(out / "last.safetensors").metadata.at("backbone_tail") == "full");
}

TEST_CASE("ssd_train --backbone: a file of another layout is one line and exit 1", "[apps][ssd_train][backbone]") {
  TempDir out("bb_bad");
  auto r = test::run_app("ssd_train", train_args("ssdlite320_mobilenet_v3_large", out.path.string()) +
                                          " --iters 1 --backbone '" + files().resnet + "'");
  CHECK(r.status == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.rfind("ssd_train: " + files().resnet + ": not a torchvision mobilenet_v3_large backbone", 0) == 0);
  CHECK(r.err.find("first key 'conv1.weight' [64, 3, 7, 7]") != std::string::npos);
  CHECK(!fs::exists(out / "last.safetensors"));
  // An ImageNet file for an architecture that takes none.
  r = test::run_app("ssd_train", train_args("tiny_ssd", out.path.string()) + " --iters 1 --backbone '" +
                                     files().mobilenet + "'");
  CHECK(r.status == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("--backbone: tiny_ssd has no ImageNet backbone to load") != std::string::npos);
  // Not with --resume (the checkpoint holds the backbone).
  r = test::run_app("ssd_train", train_args("tiny_ssd", out.path.string()) + " --iters 1 --resume '" +
                                     files().mobilenet + "' --backbone '" + files().mobilenet + "'");
  CHECK(r.status == 1);
  CHECK(one_line(r.err));
}
