// Compiled with only single_include/ on the include path: the amalgamation stands alone.
#include <aq/autoquant.hpp>

int main() {
  const float rounded = aq::round_to_bf16(1.0f + 1.0f / 512.0f);
  return rounded == 1.0f ? 0 : 1;
}
