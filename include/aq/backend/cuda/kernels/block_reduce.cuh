// Block-wide reductions (CUB) whose result every thread of the block sees: the row statistics
// of the norms and the cross-entropy. CUB's block reduction has a fixed order for a fixed block
// size, so these are deterministic run to run.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cub/block/block_reduce.cuh>

namespace aq::cuda::detail {

template <class T, int Block>
struct block_reducer {
  using reduce = cub::BlockReduce<T, Block>;
  typename reduce::TempStorage temp;
  T result;
};

// Sum over the block, broadcast to all threads. Safe to call repeatedly with the same storage.
template <class T, int Block>
__device__ T block_sum(T value, block_reducer<T, Block>& s) {
  const T total = typename block_reducer<T, Block>::reduce(s.temp).Sum(value);
  if (threadIdx.x == 0) s.result = total;
  __syncthreads();
  const T out = s.result;
  __syncthreads();  // the storage may be reused right after
  return out;
}

struct max_op {
  template <class T>
  __device__ T operator()(const T& a, const T& b) const {
    return a < b ? b : a;
  }
};

template <class T, int Block>
__device__ T block_max(T value, block_reducer<T, Block>& s) {
  const T total = typename block_reducer<T, Block>::reduce(s.temp).Reduce(value, max_op{});
  if (threadIdx.x == 0) s.result = total;
  __syncthreads();
  const T out = s.result;
  __syncthreads();
  return out;
}

// Folds one chunk's max m and Σ exp(z − m) = s into a row's running (row_max, row_sum) of an
// online log-sum-exp, the sum in fp64 (the chunked cross-entropy and KL-div rows).
__device__ inline void fold_log_sum_exp(float& row_max, double& row_sum, float m, double s) {
  const float old_m = row_max;
  const float new_m = fmaxf(old_m, m);
  const double old_s = old_m == -INFINITY ? 0.0 : row_sum * exp(static_cast<double>(old_m) - new_m);
  row_sum = old_s + s * exp(static_cast<double>(m) - new_m);
  row_max = new_m;
}

// Grid of the one-block-per-row kernels (norms, row statistics), which stride over rows past 2^30 blocks.
inline unsigned row_grid(std::int64_t rows) {
  return static_cast<unsigned>(rows < (1 << 30) ? (rows > 0 ? rows : 1) : (1 << 30));
}

// *total = Σ rows (+= when Accumulate), in one block of sum_rows_block threads: a fixed order,
// deterministic. Launched as <<<1, sum_rows_block>>>.
inline constexpr int sum_rows_block = 1024;
template <bool Accumulate>
__global__ void __launch_bounds__(sum_rows_block) sum_rows_kernel(std::int64_t rows, const double* row, double* total) {
  __shared__ block_reducer<double, sum_rows_block> red;
  double s = 0.0;
  for (std::int64_t r = threadIdx.x; r < rows; r += sum_rows_block) s += row[r];
  s = block_sum(s, red);
  if (threadIdx.x == 0) *total = Accumulate ? *total + s : s;
}

}  // namespace aq::cuda::detail
