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

using formats::e4m3;
using formats::int4;
using formats::int8;
using quant::disabled;
using quant::per_block;
using quant::per_channel;
using quant::per_tensor;
using quant::quantizer;
using quant::recipe;

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
using none      = recipe<"none",      disabled,                            disabled,                     "NONE">;
// clang-format on

// `none` is the implicit candidate of every search (ModelOpt's QuantRecipe(None)); it is listed
// so that it can be named and looked up like the others.
using all_recipes = quant::recipe_list<fp8_e4m3, int8_w8a8, w4a8, w4a8_fp8, w8a4, w4a4, w4a16, w8a16, none>;

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
