// The umbrella header compiles in a CUDA translation unit (nvcc, host warnings as errors), so that
// a .cu file can use all of aq; the host call runs without a GPU and the kernel only compiles.
#include <aq/autoquant.hpp>

// Device code sees the same AQ_HD format math as the host.
__global__ void round_on_device(float* values) { values[0] = aq::round_to_bf16(values[0]); }

int main() {
  const float rounded = aq::round_to_bf16(1.0f + 1.0f / 512.0f);
  const double int8_bits = aq::quant::find_recipe("int8_w8a8").effective_bits;
  return rounded == 1.0f && int8_bits == 8.0 ? 0 : 1;
}
