// The CUDA tests' program: `aq_cuda_tests test_norms_cuda` runs that file's test, no argument
// runs them all. Exit status 1 when a test fails or a name is unknown.
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
  for (const aq_test::gpu_test& test : aq_test::gpu_tests()) {
    bool selected = argc == 1;
    for (int i = 1; i < argc; ++i) selected = selected || test.name == argv[i];
    if (selected && aq_test::run_gpu_test(test.label, test.body) != 0) status = 1;
  }
  return status;
}
