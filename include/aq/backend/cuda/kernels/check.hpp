// Error checking for every CUDA runtime and cuBLASLt call of the CUDA backend: a failing call
// throws aq::error naming the call, the source file:line and the library's error string, so a
// launch failure surfaces where it happened instead of at the next synchronisation.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "aq/core/error.hpp"

namespace aq::cuda {

inline void check_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  if (status != cudaSuccess) {
    throw error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
                cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
}

inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: cuBLAS status " +
                std::to_string(static_cast<int>(status)) + " (" + cublasLtGetStatusName(status) + ": " +
                cublasLtGetStatusString(status) + ")");
  }
}

}  // namespace aq::cuda

// Wraps a cudaError_t-returning call; throws aq::error on failure.
#define AQ_CUDA_CHECK(expr) ::aq::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// Checks the launch just issued (configuration errors are reported by cudaGetLastError).
#define AQ_CUDA_CHECK_LAUNCH() ::aq::cuda::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
// Wraps a cublasStatus_t-returning cuBLASLt call; throws aq::error on failure.
#define AQ_CUBLAS_CHECK(expr) ::aq::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
