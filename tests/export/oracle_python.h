// The Python that test oracles run under (ONNX Runtime, pycocotools): $ENGINE_ORACLE_PYTHON,
// else the repository's .venv-oracles (scripts/install_oracles.sh), else python3 on PATH.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace test {

inline std::string oracle_python() {
  if (const char* p = std::getenv("ENGINE_ORACLE_PYTHON"); p != nullptr && *p) return p;
  const std::filesystem::path venv = std::filesystem::path(ENGINE_TEST_DATA_DIR) / ".." / ".venv-oracles" / "bin" / "python";
  if (std::filesystem::exists(venv)) return venv.string();
  return "python3";
}

}  // namespace test
