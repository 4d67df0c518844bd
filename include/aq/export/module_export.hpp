// One quantized module as an export writes it: the plan decides it (recipe, scheme, shape, amax)
// and every scheme struct (weight_schemes.hpp) turns it into tensors and config fields.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aq/export/checkpoint_layout.hpp"

namespace aq::hf_export {

struct module_export {
  std::string name;    // whole-model module name: the checkpoint's tensor prefix
  std::string recipe;  // aq recipe name
  weight_scheme scheme = weight_scheme::fp8_tensor;
  bool static_input = false;        // a calibrated per-tensor input scale is written
  std::int64_t rows = 0, cols = 0;  // weight [out, in]
  std::vector<float> weight_amax;   // 1 (fp8, nvfp4: the group's max), rows (int8) or rows*cols/128 (int4)
  float input_amax = 0.0f;          // the fused group's max (static_input only)
};

}  // namespace aq::hf_export
