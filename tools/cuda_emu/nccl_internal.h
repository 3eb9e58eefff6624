// cuda-emu NCCL: data types and reductions (nccl_reduce.cpp), shared with nccl.cpp.
#pragma once
#include <cstddef>

#include "nccl.h"

namespace emu::nccl_detail {

size_t type_size(ncclDataType_t t);  // bytes of one element; 0 for a type not emulated
const char* type_name(int t);        // "ncclFloat32", ...
const char* op_name(int op);         // "ncclSum", ...
// out[i] = all[rank 0][i] (op) all[rank 1][i] (op) ... in rank order (ncclAvg: the sum
// divided by nranks); `all` holds nranks blocks of count elements. bf16 is rounded to bf16
// after each step.
void reduce(void* out, const char* all, size_t count, int nranks, ncclDataType_t t, ncclRedOp_t op);

}  // namespace emu::nccl_detail
