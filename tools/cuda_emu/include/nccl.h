// cuda-emu: a stand-in for NCCL's <nccl.h> (the declarations of NCCL 2.28 that the project
// uses, with NCCL's names, enum values and signatures), implemented in tools/cuda_emu/nccl.cpp
// over MPI between the processes that `mpirun` starts. Built only when MPI is found.
//
// Behaviour (docs/testing.md, "NCCL over MPI"):
// - ncclGetUniqueId makes a random 128-byte id (no MPI needed). ncclCommInitRank needs MPI
//   initialised with MPI_THREAD_MULTIPLE (else ncclInvalidUsage) and is collective over
//   MPI_COMM_WORLD: every process of the world calls it together. The ids, ranks and nranks
//   are exchanged; a group whose ranks repeat, leave a gap, or disagree on nranks fails on
//   every member with ncclInvalidUsage (a bad rank or nranks on the caller: ncclInvalidArgument).
// - Collectives are checked when called (comm, datatype, op, root, buffers: non-null and
//   inside one cudaMalloc block) and then queued on the given emulated stream (emu::enqueue):
//   they run, calling MPI, when the stream runs. Each first exchanges a header (sequence
//   number, collective, count, datatype, op, root): a rank that called something else sets
//   ncclInvalidUsage on every rank's comm (ncclCommGetAsyncError) and nothing is written.
//   A peer that does not join within CUDA_EMU_NCCL_TIMEOUT seconds (default 300) sets
//   ncclRemoteError. An errored or aborted comm runs nothing more.
// - Reductions gather every rank's data and combine it in rank order (rank 0, then 1, ...),
//   so every rank gets the same bits. bf16 is rounded after each addition.
// - ncclGroupStart / ncclGroupEnd nest; the calls between them are queued at the outermost
//   ncclGroupEnd, in call order.
// - Not emulated (ncclInvalidArgument): ncclFloat16, the fp8 types, capture of NCCL calls in
//   a CUDA graph (ncclInvalidUsage); count * element size over INT_MAX bytes.
#pragma once
#include <cuda_runtime.h>
#include <limits.h>
#include <stddef.h>

#define NCCL_MAJOR 2
#define NCCL_MINOR 28
#define NCCL_PATCH 9
#define NCCL_SUFFIX ""
#define NCCL_VERSION_CODE 22809
#define NCCL_VERSION(X, Y, Z) (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : (X) * 10000 + (Y) * 100 + (Z))

extern "C" {

typedef struct ncclComm* ncclComm_t;
#define NCCL_COMM_NULL NULL
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 8
} ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4, ncclNumOps = 5 } ncclRedOp_t;

typedef enum {
  ncclInt8 = 0, ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2, ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6, ncclHalf = 6,
  ncclFloat32 = 7, ncclFloat = 7,
  ncclFloat64 = 8, ncclDouble = 8,
  ncclBfloat16 = 9,
  ncclFloat8e4m3 = 10,
  ncclFloat8e5m2 = 11,
  ncclNumTypes = 12
} ncclDataType_t;

ncclResult_t ncclGetVersion(int* version);
ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId);
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
const char* ncclGetErrorString(ncclResult_t result);
const char* ncclGetLastError(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError);
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count);
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank);

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclGroupStart();
ncclResult_t ncclGroupEnd();

}  // extern "C"
