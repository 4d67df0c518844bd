// The one place Eigen enters aq: the CPU backend's GEMMs and attention tiles use Eigen/Core, and
// CUDA translation units reach it through the CPU model headers (the CUDA engine shares them).
#pragma once

// Eigen marks defaulted special members __host__ __device__, which nvcc warns about (20012) at
// every translation unit that includes it; the warning is about Eigen's own declarations, so it is
// silenced here, for Eigen only, instead of around each include site.
#if defined(__CUDACC__)
#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#endif
#include <Eigen/Core>
#if defined(__CUDACC__)
#pragma nv_diagnostic pop
#endif
