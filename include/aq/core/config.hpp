// Build configuration shared by host and device code: the AQ_HD qualifier and version numbers.
// Host-only translation units see AQ_HD as nothing, so every header here compiles with plain g++.
#pragma once

#if defined(__CUDACC__)
#define AQ_HD __host__ __device__
#define AQ_DEVICE __device__
#else
#define AQ_HD
#define AQ_DEVICE
#endif

namespace aq {

inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;

}  // namespace aq
