#!/usr/bin/env python3
"""Checks tools/cuda_emu/include/nccl.h against NVIDIA's real <nccl.h>.

Generates one C++ file that includes the real header and asserts, for every function the
stand-in declares, that the real function has exactly the same type, for every enumerator
the stand-in defines, that the real one has the same value, and that ncclUniqueId has the
same size; then compiles it (syntax only). Needs the real headers (CUDA toolkit with NCCL),
not a GPU:
    python3 tools/cuda_emu/check_nccl_header.py [/usr/local/cuda/include]
Exit status 0 when everything matches.
"""
import pathlib
import re
import subprocess
import sys
import tempfile

here = pathlib.Path(__file__).resolve().parent
real_include = sys.argv[1] if len(sys.argv) > 1 else "/usr/local/cuda/include"
text = (here / "include" / "nccl.h").read_text()
code = re.sub(r"//[^\n]*", "", text)
code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)

checks = []
# Function declarations: "<ret> ncclName(<params>);" (possibly over several lines).
for m in re.finditer(r"(ncclResult_t|const char\*)\s+(nccl\w+)\s*\(([^;{]*?)\)\s*;", code, flags=re.S):
    ret, name, params = m.group(1), m.group(2), " ".join(m.group(3).split())
    types = []
    for p in filter(None, (x.strip() for x in params.split(","))):
        types.append(re.sub(r"\b\w+$", "", p).strip() or p)  # drop the parameter's name
    checks.append(f"static_assert(std::is_same_v<decltype(&{name}), {ret} (*)({', '.join(types)})>, \"{name}\");")
# Enumerators "NAME = value" inside typedef enums.
for body in re.findall(r"typedef enum\s*\{(.*?)\}", code, flags=re.S):
    for name, value in re.findall(r"\b(nccl\w+)\s*=\s*([^,\n]+)", body):
        checks.append(f"static_assert(static_cast<long>({name}) == static_cast<long>({value.strip()}), \"{name}\");")
checks.append("static_assert(sizeof(ncclUniqueId) == 128, \"ncclUniqueId\");")
for macro in ("NCCL_UNIQUE_ID_BYTES", "NCCL_MAJOR", "NCCL_MINOR"):
    value = re.search(rf"#define {macro} (\S+)", code).group(1)
    checks.append(f"static_assert({macro} == {value}, \"{macro}\");")

src = "#include <nccl.h>\n#include <type_traits>\n" + "\n".join(checks) + "\n"
with tempfile.NamedTemporaryFile("w", suffix=".cpp", delete=False) as f:
    f.write(src)
r = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-I", real_include, f.name], capture_output=True, text=True)
pathlib.Path(f.name).unlink()
print(f"{len(checks)} checks against {real_include}/nccl.h: {'OK' if r.returncode == 0 else 'MISMATCH'}")
if r.returncode:
    print("\n".join(l for l in r.stderr.splitlines() if "error" in l)[:4000])
sys.exit(r.returncode)
