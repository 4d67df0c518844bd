// The recipe table: one line per recipe (name, weight quantizer, input quantizer, ModelOpt
// built-in config if identical). Everything else (registry, --help, docs tables, manifest names,
// tests) is generated from `all_recipes`, so a new recipe is one line here plus one list entry.
#pragma once

#include <array>
#include <string_view>
#include <utility>

#include "aq/formats/all_formats.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"
#include "aq/quant/recipe.hpp"

namespace aq::recipes {

using formats::e2m1;
using formats::e3m2;
using formats::e4m3;
using formats::int4;
using formats::int8;
using quant::disabled;
using quant::dynamic_amax;
using quant::e4m3_block_scale;
using quant::e8m0_block_scale;
using quant::per_block;
using quant::per_channel;
using quant::per_tensor;
using quant::per_tile;
using quant::per_token;
using quant::quantizer;
using quant::recipe;

// NVFP4: e2m1 in blocks of 16 with e4m3 block scales under a calibrated fp32 global scale. Also
// the weight of W4A8_NVFP4_FP8_CFG, whose config says blocks of 32: ModelOpt's NVFP4 kernel
// (Triton, sm_89+) always uses 16, and aq follows what ModelOpt computes.
using nvfp4_quantizer = quantizer<e2m1, per_block<16>, e4m3_block_scale>;
// MX: blocks of 32 sharing an e8m0 power of two, from the data (no calibration). The MX configs
// run no calibration at all (algorithm None), so W4A8_MXFP4_FP8's fp8 input takes its amax from
// each input tensor: dynamic per-tensor scaling.
template <class Element>
using mx_quantizer = quantizer<Element, per_block<32>, e8m0_block_scale>;

// clang-format off
//                      name          weight quantizer                     input (activation) quantizer   ModelOpt built-in
using fp8_e4m3  = recipe<"fp8_e4m3",  quantizer<e4m3, per_tensor>,         quantizer<e4m3, per_tensor>,  "FP8_DEFAULT_CFG">;
using int8_w8a8 = recipe<"int8_w8a8", quantizer<int8, per_channel>,        quantizer<int8, per_tensor>,  "INT8_DEFAULT_CFG">;
using w4a8      = recipe<"w4a8",      quantizer<int4, per_block<128>>,     quantizer<int8, per_tensor>>;
using w4a8_fp8  = recipe<"w4a8_fp8",  quantizer<int4, per_block<128>>,     quantizer<e4m3, per_tensor>>;
using w8a4      = recipe<"w8a4",      quantizer<int8, per_channel>,        quantizer<int4, per_tensor>>;
using w4a4      = recipe<"w4a4",      quantizer<int4, per_block<128>>,     quantizer<int4, per_tensor>>;
using w4a16     = recipe<"w4a16",     quantizer<int4, per_block<128>>,     disabled,                     "INT4_BLOCKWISE_WEIGHT_ONLY_CFG">;
using w8a16     = recipe<"w8a16",     quantizer<int8, per_channel>,        disabled,                     "INT8_WEIGHT_ONLY_CFG">;
using nvfp4          = recipe<"nvfp4",          nvfp4_quantizer,                     nvfp4_quantizer,                              "NVFP4_DEFAULT_CFG">;
using w4a8_nvfp4_fp8 = recipe<"w4a8_nvfp4_fp8", nvfp4_quantizer,                     quantizer<e4m3, per_tensor>,                  "W4A8_NVFP4_FP8_CFG">;
using mxfp8          = recipe<"mxfp8",          mx_quantizer<e4m3>,                  mx_quantizer<e4m3>,                           "MXFP8_DEFAULT_CFG">;
using mxfp6          = recipe<"mxfp6",          mx_quantizer<e3m2>,                  mx_quantizer<e3m2>,                           "MXFP6_DEFAULT_CFG">;
using mxfp4          = recipe<"mxfp4",          mx_quantizer<e2m1>,                  mx_quantizer<e2m1>,                           "MXFP4_DEFAULT_CFG">;
using w4a8_mxfp4_fp8 = recipe<"w4a8_mxfp4_fp8", mx_quantizer<e2m1>,                  quantizer<e4m3, per_tensor, dynamic_amax>,    "W4A8_MXFP4_FP8_CFG">;
using mxint8         = recipe<"mxint8",         mx_quantizer<int8>,                  mx_quantizer<int8>,                           "MXINT8_DEFAULT_CFG">;
using fp8_pc_pt      = recipe<"fp8_pc_pt",      quantizer<e4m3, per_channel>,        quantizer<e4m3, per_token, dynamic_amax>,     "FP8_PER_CHANNEL_PER_TOKEN_CFG">;
using fp8_2d_blockwise = recipe<"fp8_2d_blockwise", quantizer<e4m3, per_tile<128, 128>>, disabled,                                  "FP8_2D_BLOCKWISE_WEIGHT_ONLY_CFG">;
using none      = recipe<"none",      disabled,                            disabled,                     "NONE">;
// clang-format on

// `none` is the implicit candidate of every search (ModelOpt's QuantRecipe(None)); it is listed
// so that it can be named and looked up like the others.
using all_recipes = quant::recipe_list<fp8_e4m3, int8_w8a8, w4a8, w4a8_fp8, w8a4, w4a4, w4a16, w8a16, nvfp4,
                                       w4a8_nvfp4_fp8, mxfp8, mxfp6, mxfp4, w4a8_mxfp4_fp8, mxint8, fp8_pc_pt,
                                       fp8_2d_blockwise, none>;

// Names used by the downstream auto-quantize-model experiments ("quant pairs") and earlier docs.
inline constexpr std::array<std::pair<std::string_view, std::string_view>, 9> recipe_aliases{{
    {"wfp8_afp8", "fp8_e4m3"},
    {"wint8_aint8", "int8_w8a8"},
    {"wint4_aint8", "w4a8"},
    {"int4_w4a8", "w4a8"},
    {"wint4_afp8", "w4a8_fp8"},
    {"wint8_aint4", "w8a4"},
    {"wint4_aint4", "w4a4"},
    {"wint4_afp16", "w4a16"},
    {"wint8_afp16", "w8a16"},
}};

}  // namespace aq::recipes
