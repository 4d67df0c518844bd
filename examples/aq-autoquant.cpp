// aq-autoquant: the reference driver (model dir + calibration data + formats + budget -> reports).
// The model-driven pipeline arrives with the AutoQuant end-to-end work; until then the driver
// says so plainly instead of pretending to run.
#include <cstdio>
#include <cstring>

#include <aq/autoquant.hpp>

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf("usage: aq-autoquant --model DIR --calib FILE --formats LIST --effective-bits B --output-dir OUT\n");
      return 0;
    }
  }
  std::fprintf(stderr,
               "aq-autoquant: the Qwen3-VL model pipeline is not built yet; model support arrives with the "
               "AutoQuant end-to-end work (calibrate, score, allocate, report)\n");
  return 2;
}
