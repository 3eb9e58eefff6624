# NCCL for the engine's nccl communicator (engine/src/dist/nccl_communicator.cpp, issue 13).
# Sets ENGINE_HAVE_NCCL (ON/OFF) and, when ON, the target NCCL::nccl. NCCL needs MPI too (the
# unique id travels by MPI and host data goes through the MPI communicator): call after
# find_package(MPI COMPONENTS C).
#   emulated build (-DENGINE_CUDA_EMULATOR=ON): tools/cuda_emu's stand-in over MPI, defined
#     there when MPI was found;
#   CUDA build: nccl.h and libnccl from the CUDA toolkit (CUDAToolkit_INCLUDE_DIRS /
#     CUDAToolkit_LIBRARY_DIR), or NCCL_ROOT (a separate NCCL install).
set(ENGINE_HAVE_NCCL OFF)
if(ENGINE_CUDA_EMULATOR)
  if(TARGET NCCL::nccl AND MPI_C_FOUND)
    set(ENGINE_HAVE_NCCL ON)
    message(STATUS "ssd_engine: NCCL: the emulator's stand-in over MPI")
  endif()
elseif(ENGINE_WITH_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND MPI_C_FOUND)
    if(NOT TARGET NCCL::nccl)
      add_library(NCCL::nccl UNKNOWN IMPORTED)
      set_target_properties(NCCL::nccl PROPERTIES IMPORTED_LOCATION "${NCCL_LIBRARY}"
                                                  INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
    endif()
    set(ENGINE_HAVE_NCCL ON)
    message(STATUS "ssd_engine: NCCL ${NCCL_LIBRARY}")
  elseif(NOT MPI_C_FOUND)
    message(STATUS "ssd_engine: NCCL backend off (needs MPI: install libopenmpi-dev)")
  else()
    message(STATUS "ssd_engine: NCCL backend off (nccl.h / libnccl not found; set NCCL_ROOT)")
  endif()
endif()
