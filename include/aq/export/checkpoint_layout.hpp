// The checkpoint layouts aq exports to, and which recipes each can express. A recipe outside
// these lists has no serving kernel behind it in that layout (or no field to describe it), so the
// export refuses it up front with the reason below instead of writing a checkpoint nothing loads.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "aq/core/error.hpp"
#include "aq/quant/recipes.hpp"

namespace aq::hf_export {

enum class checkpoint_layout {
  modelopt,            // ModelOpt 0.39 export_hf_checkpoint: hf_quant_config.json + weight_scale/input_scale
  compressed_tensors,  // compressed-tensors 0.20 (llm-compressor, vLLM): config_groups in config.json
};

inline std::string_view layout_name(checkpoint_layout layout) {
  return layout == checkpoint_layout::modelopt ? "modelopt" : "compressed-tensors";
}

inline checkpoint_layout parse_checkpoint_layout(std::string_view text) {
  if (text == "modelopt") return checkpoint_layout::modelopt;
  if (text == "compressed-tensors") return checkpoint_layout::compressed_tensors;
  throw error("--format: '" + std::string(text) + "' is unknown; valid: modelopt, compressed-tensors");
}

// How the weight of a module is stored.
enum class weight_scheme {
  fp8_tensor,     // fp8_e4m3: e4m3 weight, per-tensor scale, static per-tensor e4m3 input
  int8_channel,   // int8_w8a8 (static per-tensor int8 input) and w8a16 (weight only)
  int4_block128,  // w4a16: int4 weight in blocks of 128 input columns, weight only
  nvfp4_block16,  // nvfp4: e2m1 weight, e4m3 scales per 16 inputs, fp32 global scale; e4m3-scaled e2m1 input
};

// The scheme of an aq recipe, or nullopt when it is not exported (see refusal_reason); both
// layouts export the same recipes.
inline std::optional<weight_scheme> scheme_of(std::string_view recipe) {
  if (recipe == recipes::fp8_e4m3::name) return weight_scheme::fp8_tensor;
  if (recipe == recipes::int8_w8a8::name || recipe == recipes::w8a16::name) return weight_scheme::int8_channel;
  if (recipe == recipes::w4a16::name) return weight_scheme::int4_block128;
  if (recipe == recipes::nvfp4::name) return weight_scheme::nvfp4_block16;
  return std::nullopt;
}

// Why a quantizing recipe is not exported in `layout`.
inline std::string refusal_reason(std::string_view recipe, checkpoint_layout layout) {
  const std::string where(layout_name(layout));
  if (recipe == recipes::w4a8::name || recipe == recipes::w4a8_fp8::name || recipe == recipes::w8a4::name ||
      recipe == recipes::w4a4::name) {
    return "integer weights with low-bit activations have no " + where + " scheme a serving kernel loads";
  }
  if (recipe == recipes::w4a8_nvfp4_fp8::name) return "NVFP4 weights with fp8 inputs are not exported yet";
  if (recipe.starts_with("mx") || recipe == recipes::w4a8_mxfp4_fp8::name) {
    return "MX block formats take their scales from the data at run time; no " + where + " export";
  }
  if (recipe == recipes::fp8_pc_pt::name) return "per-channel fp8 with dynamic per-token inputs is not exported yet";
  if (recipe == recipes::fp8_2d_blockwise::name) return "2-D blockwise fp8 is not exported yet";
  return "no " + where + " scheme for it";
}

}  // namespace aq::hf_export
