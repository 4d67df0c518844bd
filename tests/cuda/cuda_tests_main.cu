// The CUDA tests' program: `aq_cuda_tests test_norms_cuda` runs that file's test, no argument
// runs them all. Exit status 1 when a test fails or a name is unknown; without a GPU every test is
// skipped (one line) and the status is that of the names alone.
#include <cstdio>
#include <string>

#include "cuda_test_util.cuh"

int main(int argc, char** argv) {
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    bool known = false;
    for (const aq_test::gpu_test& test : aq_test::gpu_tests()) known = known || test.name == argv[i];
    if (!known) {
      std::printf("unknown CUDA test %s\n", argv[i]);
      status = 1;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no GPU, skipped (%zu CUDA tests)\n", argc == 1 ? aq_test::gpu_tests().size() : static_cast<std::size_t>(argc - 1));
    return status;
  }
  for (const aq_test::gpu_test& test : aq_test::gpu_tests()) {
    bool selected = argc == 1;
    for (int i = 1; i < argc; ++i) selected = selected || test.name == argv[i];
    if (selected && aq_test::run_gpu_test(test.label, test.body) != 0) status = 1;
  }
  return status;
}
