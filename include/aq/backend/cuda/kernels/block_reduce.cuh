// Block-wide reductions (CUB) whose result every thread of the block sees: the row statistics
// of the norms and the cross-entropy. CUB's block reduction has a fixed order for a fixed block
// size, so these are deterministic run to run.
#pragma once

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

}  // namespace aq::cuda::detail
