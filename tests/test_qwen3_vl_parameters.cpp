// Qwen3-VL parameters, quantizable modules and groups from a config: the tensor schema's rows,
// the 4B names, shapes and counts (checked against the architecture tables and ModelOpt's
// reference manifests), and the
// binding check of checkpoints (transformers-written tiny ones and synthetic broken ones), and
// the bounds on what a config may imply (overflowing counts, configs far larger than the checkpoint).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/model/qwen3_vl/checkpoint_source.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace test_qwen3_vl_parameters {

namespace fs = std::filesystem;
using aq::qwen3_vl::model_part;

namespace {

aq::qwen3_vl::config config_4b() {
  return aq::read_qwen3_vl_config(fs::path(AQ_TEST_FIXTURES) / "configs" / "qwen3_vl_4b_instruct.json");
}

const fs::path tiny_tied = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_tied";
const fs::path tiny_untied = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_untied";

std::map<std::string, std::vector<std::int64_t>> shapes_by_name(const std::vector<aq::qwen3_vl::parameter_spec>& specs) {
  std::map<std::string, std::vector<std::int64_t>> out;
  for (const auto& spec : specs) out[spec.name] = spec.shape;
  return out;
}

// A synthetic checkpoint holding exactly `specs` (bf16, values irrelevant) plus `extra`.
fs::path write_checkpoint(const std::string& name, const std::vector<aq::qwen3_vl::parameter_spec>& specs) {
  const fs::path dir = fs::temp_directory_path() / ("aq_test_qwen3_vl_parameters_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  aq::safetensors_writer writer;
  for (const auto& spec : specs) {
    writer.add_rounded(spec.name, aq::dtype_bf16, spec.shape, std::vector<float>(static_cast<std::size_t>(spec.numel()), 0.5f));
  }
  writer.write(dir / "model.safetensors");
  return dir;
}

std::vector<std::string> problems_of(const aq::qwen3_vl::config& cfg, const fs::path& dir) {
  const aq::safetensors_checkpoint checkpoint(dir);
  return aq::qwen3_vl::parameter_problems(cfg, checkpoint.tensors());
}

}  // namespace

TEST_CASE("the 4B config expects 315 vision and 398 text tensors with the documented shapes") {
  const auto cfg = config_4b();
  const auto specs = aq::qwen3_vl::expected_parameters(cfg);
  const auto count = [&](model_part part) {
    return std::count_if(specs.begin(), specs.end(), [&](const auto& s) { return s.part == part; });
  };
  CHECK(count(model_part::vision) == 315);
  CHECK(count(model_part::text) == 398);
  CHECK(count(model_part::lm_head) == 0);  // tied: no lm_head.weight expected
  CHECK(specs.front().name == "model.visual.patch_embed.proj.weight");
  CHECK(specs.back().name == "model.language_model.norm.weight");

  const auto shapes = shapes_by_name(specs);
  CHECK(shapes.size() == specs.size());  // names unique
  using shape = std::vector<std::int64_t>;
  const std::map<std::string, shape> table = {
      {"model.language_model.embed_tokens.weight", {151936, 2560}},
      {"model.language_model.layers.0.input_layernorm.weight", {2560}},
      {"model.language_model.layers.0.self_attn.q_proj.weight", {4096, 2560}},
      {"model.language_model.layers.35.self_attn.k_proj.weight", {1024, 2560}},
      {"model.language_model.layers.35.self_attn.v_proj.weight", {1024, 2560}},
      {"model.language_model.layers.7.self_attn.o_proj.weight", {2560, 4096}},
      {"model.language_model.layers.7.self_attn.q_norm.weight", {128}},
      {"model.language_model.layers.7.self_attn.k_norm.weight", {128}},
      {"model.language_model.layers.7.post_attention_layernorm.weight", {2560}},
      {"model.language_model.layers.7.mlp.gate_proj.weight", {9728, 2560}},
      {"model.language_model.layers.7.mlp.up_proj.weight", {9728, 2560}},
      {"model.language_model.layers.7.mlp.down_proj.weight", {2560, 9728}},
      {"model.language_model.norm.weight", {2560}},
      {"model.visual.patch_embed.proj.weight", {1024, 3, 2, 16, 16}},
      {"model.visual.patch_embed.proj.bias", {1024}},
      {"model.visual.pos_embed.weight", {2304, 1024}},
      {"model.visual.blocks.23.norm1.weight", {1024}},
      {"model.visual.blocks.23.norm1.bias", {1024}},
      {"model.visual.blocks.23.norm2.bias", {1024}},
      {"model.visual.blocks.0.attn.qkv.weight", {3072, 1024}},
      {"model.visual.blocks.0.attn.qkv.bias", {3072}},
      {"model.visual.blocks.0.attn.proj.weight", {1024, 1024}},
      {"model.visual.blocks.0.attn.proj.bias", {1024}},
      {"model.visual.blocks.0.mlp.linear_fc1.weight", {4096, 1024}},
      {"model.visual.blocks.0.mlp.linear_fc1.bias", {4096}},
      {"model.visual.blocks.0.mlp.linear_fc2.weight", {1024, 4096}},
      {"model.visual.blocks.0.mlp.linear_fc2.bias", {1024}},
      {"model.visual.merger.norm.weight", {1024}},
      {"model.visual.merger.norm.bias", {1024}},
      {"model.visual.merger.linear_fc1.weight", {4096, 4096}},
      {"model.visual.merger.linear_fc1.bias", {4096}},
      {"model.visual.merger.linear_fc2.weight", {2560, 4096}},
      {"model.visual.merger.linear_fc2.bias", {2560}},
      {"model.visual.deepstack_merger_list.2.norm.weight", {4096}},
      {"model.visual.deepstack_merger_list.2.norm.bias", {4096}},
      {"model.visual.deepstack_merger_list.2.linear_fc1.weight", {4096, 4096}},
      {"model.visual.deepstack_merger_list.2.linear_fc2.weight", {2560, 4096}},
      {"model.visual.deepstack_merger_list.2.linear_fc2.bias", {2560}},
  };
  for (const auto& [name, expected] : table) {
    INFO(name);
    REQUIRE(shapes.count(name) == 1);
    CHECK(shapes.at(name) == expected);
  }
  CHECK(shapes.count("model.visual.deepstack_merger_list.3.norm.weight") == 0);
  CHECK(shapes.count("model.language_model.layers.36.input_layernorm.weight") == 0);
  CHECK(shapes.count("model.language_model.layers.0.self_attn.q_proj.bias") == 0);  // attention_bias false
}

TEST_CASE("4B parameter counts match the architecture table") {
  auto cfg = config_4b();
  const auto counts = aq::qwen3_vl::count_parameters(cfg);
  CHECK(counts.text == 4'022'468'096);
  CHECK(counts.vision == 415'347'712);
  CHECK(counts.lm_head == 388'956'160);
  CHECK(counts.lm_head_tied);
  CHECK(counts.total == 4'437'815'808);
  cfg.tie_word_embeddings = false;
  const auto untied = aq::qwen3_vl::count_parameters(cfg);
  CHECK(untied.total == 4'437'815'808 + 388'956'160);
  CHECK(aq::qwen3_vl::expected_parameters(cfg).back().name == "lm_head.weight");
  cfg.text.attention_bias = true;
  const auto biased = shapes_by_name(aq::qwen3_vl::expected_parameters(cfg));
  CHECK(biased.at("model.language_model.layers.0.self_attn.k_proj.bias") == std::vector<std::int64_t>{1024});
  CHECK(biased.at("model.language_model.layers.0.self_attn.o_proj.bias") == std::vector<std::int64_t>{2560});
}

TEST_CASE("4B quantizable modules and groups: 357 Linear + Conv3d, 250 groups, ModelOpt totals") {
  const auto cfg = config_4b();
  const auto modules = aq::qwen3_vl::quantizable_modules(cfg);
  REQUIRE(modules.size() == 358);
  CHECK(std::count_if(modules.begin(), modules.end(), [](const auto& m) { return m.kind == aq::module_kind::linear; }) == 357);
  CHECK(modules.front().name == "model.visual.patch_embed.proj");
  CHECK(modules.front().kind == aq::module_kind::conv3d);
  CHECK(modules.back().name == "lm_head");

  std::int64_t full = 0;
  std::int64_t decoder = 0;
  std::int64_t vision = 0;
  for (const auto& m : modules) {
    full += m.numel();
    if (aq::qwen3_vl::part_of(m.name) == model_part::text) decoder += m.numel();
    if (aq::qwen3_vl::part_of(m.name) == model_part::vision) vision += m.numel();
  }
  CHECK(full == 4'434'886'656);
  CHECK(decoder == 3'633'315'840);
  CHECK(vision == 412'614'656);

  const auto groups = aq::group_modules(modules);
  REQUIRE(groups.size() == 250);
  std::map<std::string, const aq::module_group*> by_name;
  for (const auto& g : groups) by_name[g.name] = &g;
  CHECK(by_name.size() == 250);
  const std::string layer = "model.language_model.layers.9.";
  CHECK(by_name.at(layer + "self_attn.q_proj.quant_recipe")->numel == 15'728'640);
  CHECK(by_name.at(layer + "self_attn.q_proj.quant_recipe")->members.size() == 3);
  CHECK(by_name.at(layer + "self_attn.o_proj.quant_recipe")->numel == 10'485'760);
  CHECK(by_name.at(layer + "mlp.gate_proj.quant_recipe")->numel == 49'807'360);
  CHECK(by_name.at(layer + "mlp.down_proj.quant_recipe")->numel == 24'903'680);
  CHECK(by_name.at("lm_head.quant_recipe")->numel == 388'956'160);
  CHECK(by_name.at("model.visual.patch_embed.proj.quant_recipe")->numel == 1'572'864);
  CHECK(by_name.count(layer + "self_attn.k_proj.quant_recipe") == 0);
  CHECK(by_name.count(layer + "mlp.up_proj.quant_recipe") == 0);
  std::int64_t vision_blocks = 0;
  std::int64_t mergers = 0;
  for (const auto& g : groups) {
    if (g.name.starts_with("model.visual.blocks.")) vision_blocks += g.numel;
    if (g.name.find("merger") != std::string::npos) mergers += g.numel;
  }
  CHECK(vision_blocks == 301'989'888);
  CHECK(mergers == 109'051'904);

  // Every module's weight shape is the expected parameter's (lm_head: the embedding's, tied).
  const auto shapes = shapes_by_name(aq::qwen3_vl::expected_parameters(cfg));
  for (const auto& m : modules) {
    const std::string weight = m.name == "lm_head" ? "model.language_model.embed_tokens.weight" : m.name + ".weight";
    INFO(m.name);
    CHECK(shapes.at(weight) == m.weight_shape);
  }
}

TEST_CASE("the text-only module list is the decoder's linears in layer order, then lm_head") {
  const auto cfg = config_4b();
  const auto text = aq::qwen3_vl::text_quantizable_modules(cfg);
  REQUIRE(text.size() == 36 * 7 + 1);
  const char* const per_layer[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                   "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    const std::string expected =
        "model.language_model.layers." + std::to_string(i / 7) + "." + per_layer[i % 7];
    CHECK(text[i].name == expected);
    CHECK(text[i].kind == aq::module_kind::linear);
  }
  CHECK(text[0].weight_shape == std::vector<std::int64_t>{32 * 128, 2560});
  CHECK(text[1].weight_shape == std::vector<std::int64_t>{8 * 128, 2560});
  CHECK(text[6].weight_shape == std::vector<std::int64_t>{2560, 9728});
  CHECK(text.back().name == "lm_head");
  CHECK(text.back().weight_shape == std::vector<std::int64_t>{151936, 2560});
}

TEST_CASE("module and group names and sizes equal those of ModelOpt's reference manifests") {
  const auto cfg = config_4b();
  const auto modules = aq::qwen3_vl::quantizable_modules(cfg);
  const auto groups = aq::group_modules(modules);
  const fs::path manifest_path = fs::path(AQ_DATA_DIR) / "reference" / "lm-only" / "wint8_aint8" /
                                 "wint8_aint8_autoquant_lm_quant_manifest.json";
  REQUIRE(fs::exists(manifest_path));
  simdjson::dom::parser parser;
  const simdjson::dom::element manifest = parser.load(manifest_path.string());

  // "layers": the 357 QuantLinear modules in named_modules order (the Conv3d is not listed there).
  std::vector<std::string> linear_names;
  for (const auto& m : modules) {
    if (m.kind == aq::module_kind::linear) linear_names.push_back(m.name);
  }
  std::vector<std::string> layers;
  const simdjson::dom::object layer_map = manifest["layers"].get_object().value();
  for (const auto field : layer_map) layers.emplace_back(field.key);
  CHECK(layers == linear_names);

  // "layer_sensitivity": one entry per group, in order; the NONE cost (16 bits) equals its numel.
  std::size_t index = 0;
  const simdjson::dom::object sensitivity = manifest["layer_sensitivity"].get_object().value();
  for (const auto field : sensitivity) {
    REQUIRE(index < groups.size());
    CHECK(std::string(field.key) == groups[index].name);
    const simdjson::dom::array formats = field.value["formats"].get_array().value();
    const simdjson::dom::array costs = field.value["costs"].get_array().value();
    for (std::size_t i = 0; i < formats.size(); ++i) {
      if (std::string_view(formats.at(i).get_string().value()).starts_with("NONE")) {
        CHECK(costs.at(i).get_double().value() == static_cast<double>(groups[index].numel));
      }
    }
    ++index;
  }
  CHECK(index == groups.size());
}

TEST_CASE("grouping follows ModelOpt's rules: q/k/v share, gate/up share, experts and others") {
  const aq::module_grouper grouper;
  CHECK(grouper.key("a.layers.3.self_attn.k_proj") == "a.layers.3.self_attn");
  CHECK(grouper.key("a.layers.3.mlp.up_proj") == "a.layers.3.mlp");
  CHECK(grouper.key("a.layers.3.mlp.down_proj") == "a.layers.3.mlp.down_proj");
  CHECK(grouper.key("m.layers.1.mlp.experts.7.down_proj") == "m.layers.1.mlp.experts");
  CHECK(grouper.key("m.layers.1.block_sparse_moe.experts.2.w3") == "m.layers.1.block_sparse_moe.experts");
  CHECK(grouper.key("t.ffn.experts.mlp.w1_linear.4") == "t.ffn.experts.mlp");
  CHECK(grouper.key("lm_head") == "lm_head");
}

namespace schema = aq::qwen3_vl::schema;

TEST_CASE("the tensor schema: modules per unit, their roles, biases and GPU dtypes") {
  const auto rows = [](schema::family f) { return schema::modules_of(f).size(); };
  CHECK(rows(schema::family::vision_stem) == 2);   // patch_embed.proj, pos_embed
  CHECK(rows(schema::family::vision_block) == 6);  // norm1, norm2, attn.qkv, attn.proj, mlp.linear_fc1/2
  CHECK(rows(schema::family::merger) == 3);        // norm, linear_fc1, linear_fc2
  CHECK(rows(schema::family::text_stem) == 1);     // embed_tokens
  CHECK(rows(schema::family::text_layer) == 11);   // q/k/v/o, q_norm, k_norm, gate/up/down, two RMSNorms
  CHECK(rows(schema::family::text_tail) == 1);     // norm
  CHECK(rows(schema::family::head) == 1);          // lm_head
  CHECK(schema::modules.size() == 25);

  const auto cfg = config_4b();
  const auto count = [&](schema::family f, auto&& keep) {
    std::size_t n = 0;
    for (const auto& m : schema::modules_of(f)) n += keep(m) ? 1 : 0;
    return n;
  };
  const auto tensors = [&](const schema::module_spec& m) {
    return (schema::weight_stored(m, cfg) ? 1u : 0u) + (schema::has_bias(m, cfg) ? 1u : 0u);
  };
  const auto tensors_of = [&](schema::family f) {
    std::size_t n = 0;
    for (const auto& m : schema::modules_of(f)) n += tensors(m);
    return n;
  };
  CHECK(tensors_of(schema::family::text_layer) == 11);   // no attention bias in the 4B
  CHECK(tensors_of(schema::family::vision_block) == 12);  // every vision module has a bias
  CHECK(tensors_of(schema::family::merger) == 6);
  CHECK(tensors_of(schema::family::head) == 0);          // tied: lm_head.weight is embed_tokens'
  CHECK(count(schema::family::text_layer, schema::quantizable) == 7);
  CHECK(count(schema::family::vision_block, schema::quantizable) == 4);
  CHECK(count(schema::family::merger, schema::quantizable) == 2);
  CHECK(count(schema::family::vision_stem, schema::quantizable) == 1);  // the Conv3d
  CHECK(count(schema::family::text_layer, schema::is_norm) == 4);
  CHECK(count(schema::family::vision_block, schema::is_norm) == 2);
  CHECK(schema::spec(schema::module_id::patch_embed).kind == schema::role::conv3d);
  CHECK(schema::spec(schema::module_id::pos_embed).kind == schema::role::embedding);
  CHECK(schema::spec(schema::module_id::pos_embed).dtype == schema::gpu_dtype::host_f32);
  CHECK(schema::spec(schema::module_id::embed_tokens).dtype == schema::gpu_dtype::bf16);
  CHECK(schema::spec(schema::module_id::q_norm).dtype == schema::gpu_dtype::f32);
  CHECK(schema::spec(schema::module_id::norm1).kind == schema::role::layer_norm);
  CHECK(schema::spec(schema::module_id::final_norm).kind == schema::role::rms_norm);

  auto biased = cfg;
  biased.text.attention_bias = true;
  const auto& q = schema::spec(schema::module_id::q_proj);
  CHECK_FALSE(schema::has_bias(q, cfg));
  CHECK(schema::has_bias(q, biased));
  CHECK_FALSE(schema::has_bias(schema::spec(schema::module_id::gate_proj), biased));
}

TEST_CASE("the tensor schema names and shapes modules as transformers does") {
  const auto cfg = config_4b();
  using schema::module_id;
  using schema::tensor_kind;
  using shape = std::vector<std::int64_t>;
  CHECK(schema::module_path(module_id::q_proj, 3) == "model.language_model.layers.3.self_attn.q_proj");
  CHECK(schema::module_path(module_id::attn_qkv, 23) == "model.visual.blocks.23.attn.qkv");
  CHECK(schema::module_path(module_id::merger_fc1) == "model.visual.merger.linear_fc1");
  CHECK(schema::module_path(module_id::merger_fc1, 2) == "model.visual.deepstack_merger_list.2.linear_fc1");
  CHECK(schema::module_path(module_id::lm_head) == "lm_head");
  CHECK(schema::tensor_name(module_id::patch_embed, -1, tensor_kind::bias) == "model.visual.patch_embed.proj.bias");
  CHECK(schema::tensor_name(module_id::final_norm) == "model.language_model.norm.weight");
  CHECK(schema::tensor_name(module_id::embed_tokens) == "model.language_model.embed_tokens.weight");

  CHECK(schema::weight_shape(cfg, module_id::q_proj, 0) == shape{4096, 2560});
  CHECK(schema::weight_shape(cfg, module_id::k_proj, 0) == shape{1024, 2560});
  CHECK(schema::weight_shape(cfg, module_id::o_proj, 0) == shape{2560, 4096});
  CHECK(schema::weight_shape(cfg, module_id::down_proj, 0) == shape{2560, 9728});
  CHECK(schema::weight_shape(cfg, module_id::patch_embed) == shape{1024, 3, 2, 16, 16});
  CHECK(schema::weight_shape(cfg, module_id::merger_norm) == shape{1024});      // before the 2x2 concat
  CHECK(schema::weight_shape(cfg, module_id::merger_norm, 0) == shape{4096});   // DeepStack: after it
  CHECK(schema::tensor_shape(cfg, module_id::mlp_fc1, 5, tensor_kind::bias) == shape{4096});
  CHECK(schema::tensor_shape(cfg, module_id::merger_fc2, 1, tensor_kind::bias) == shape{2560});

  // Every expected parameter (tied and untied) is found again from its name alone.
  for (const bool tied : {true, false}) {
    auto c = cfg;
    c.tie_word_embeddings = tied;
    for (const auto& p : aq::qwen3_vl::expected_parameters(c)) {
      const auto ref = schema::find_tensor(p.name);
      REQUIRE_MESSAGE(ref.has_value(), p.name);
      CHECK(schema::tensor_name(*ref) == p.name);
      CHECK(schema::tensor_shape(c, *ref) == p.shape);
    }
  }
  const auto o_bias = schema::find_tensor("model.language_model.layers.7.self_attn.o_proj.bias");
  REQUIRE(o_bias.has_value());
  CHECK(o_bias->kind == tensor_kind::bias);
  CHECK(o_bias->index == 7);
  CHECK_FALSE(schema::find_tensor("model.language_model.layers.7.mlp.up_proj.bias").has_value());
  CHECK_FALSE(schema::find_tensor("model.visual.blocks.x.norm1.weight").has_value());
  CHECK_FALSE(schema::find_tensor("model.visual.merger.norm1.weight").has_value());
  CHECK_FALSE(schema::find_tensor("extra.bias").has_value());
  CHECK_FALSE(schema::find_tensor("lm_head").has_value());
}

TEST_CASE("the schema's group column forms ModelOpt's groups: q/k/v and gate/up of a layer together") {
  CHECK(schema::spec(schema::module_id::k_proj).group == schema::module_id::q_proj);
  CHECK(schema::spec(schema::module_id::v_proj).group == schema::module_id::q_proj);
  CHECK(schema::spec(schema::module_id::up_proj).group == schema::module_id::gate_proj);
  CHECK(schema::spec(schema::module_id::o_proj).group == schema::module_id::o_proj);
  CHECK(schema::spec(schema::module_id::down_proj).group == schema::module_id::down_proj);
  CHECK(schema::spec(schema::module_id::attn_qkv).group == schema::module_id::attn_qkv);

  for (const bool tied : {true, false}) {
    auto cfg = config_4b();
    cfg.tie_word_embeddings = tied;
    // Groups from the schema: keyed by (group module, instance), in order of first member.
    std::vector<std::string> names;
    std::vector<std::vector<std::size_t>> members;
    std::map<std::pair<schema::module_id, std::int64_t>, std::size_t> by_key;
    std::size_t module_index = 0;
    schema::for_each_module(cfg, [&](const schema::module_spec& m, std::int64_t index) {
      if (!schema::quantizable(m)) return;
      const auto [it, inserted] = by_key.try_emplace({m.group, index}, names.size());
      if (inserted) {
        names.push_back(schema::module_path(m.group, index) + ".quant_recipe");
        members.emplace_back();
      }
      members[it->second].push_back(module_index++);
    });
    const auto groups = aq::group_modules(aq::qwen3_vl::quantizable_modules(cfg));
    REQUIRE(groups.size() == names.size());
    CHECK(groups.size() == 250);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      CHECK(groups[g].name == names[g]);
      CHECK(groups[g].members == members[g]);
    }
  }
}

TEST_CASE("checkpoints written by transformers bind to their configs") {
  for (const fs::path& dir : {tiny_tied, tiny_untied}) {
    INFO(dir.string());
    const auto cfg = aq::read_qwen3_vl_config(dir);
    const aq::safetensors_checkpoint checkpoint(dir);
    CHECK(aq::qwen3_vl::parameter_problems(cfg, checkpoint.tensors()).empty());
    CHECK_NOTHROW(aq::qwen3_vl::check_parameters(cfg, checkpoint));
    CHECK(checkpoint.tensors().size() == aq::qwen3_vl::expected_parameters(cfg).size());
    const aq::tensor_view& head = aq::qwen3_vl::lm_head_weight(cfg, checkpoint);
    CHECK(head.name == (cfg.tie_word_embeddings ? "model.language_model.embed_tokens.weight" : "lm_head.weight"));
    // Module weights exist in the files with the module's shape (lm_head via the binding above).
    for (const auto& m : aq::qwen3_vl::quantizable_modules(cfg)) {
      const aq::tensor_view& w = m.name == "lm_head" ? head : checkpoint.at(m.name + ".weight");
      CHECK(std::vector<std::int64_t>(w.shape.begin(), w.shape.end()) == m.weight_shape);
    }
  }
}

TEST_CASE("binding reports missing, unexpected and mis-shaped tensors by name, all at once") {
  const auto cfg = aq::read_qwen3_vl_config(tiny_tied);
  auto specs = aq::qwen3_vl::expected_parameters(cfg);

  SUBCASE("a tied checkpoint may carry lm_head.weight of the embedding's shape") {
    specs.push_back({"lm_head.weight", {211, 48}, model_part::lm_head});
    CHECK(problems_of(cfg, write_checkpoint("tied_head", specs)).empty());
    specs.back().shape = {48, 211};
    CHECK(problems_of(cfg, write_checkpoint("tied_head_bad", specs)) ==
          std::vector<std::string>{"tensor lm_head.weight: shape [48, 211], expected [211, 48]"});
  }
  SUBCASE("an untied config needs lm_head.weight") {
    auto untied = cfg;
    untied.tie_word_embeddings = false;
    CHECK(problems_of(untied, write_checkpoint("untied", specs)) ==
          std::vector<std::string>{"missing tensor lm_head.weight [211, 48]"});
  }
  SUBCASE("every problem is listed, one per line") {
    specs.erase(std::find_if(specs.begin(), specs.end(), [](const auto& s) { return s.name == "model.visual.pos_embed.weight"; }));
    specs.erase(std::find_if(specs.begin(), specs.end(),
                             [](const auto& s) { return s.name == "model.language_model.layers.2.mlp.up_proj.weight"; }));
    std::find_if(specs.begin(), specs.end(), [](const auto& s) {
      return s.name == "model.language_model.layers.1.self_attn.k_proj.weight";
    })->shape = {64, 48};
    specs.push_back({"model.language_model.layers.3.mlp.up_proj.weight", {96, 48}, model_part::text});
    specs.push_back({"extra.bias", {3}, model_part::text});
    const fs::path dir = write_checkpoint("broken", specs);
    const std::vector<std::string> expected{
        "missing tensor model.visual.pos_embed.weight [16, 32]",
        "missing tensor model.language_model.layers.2.mlp.up_proj.weight [96, 48]",
        "tensor model.language_model.layers.1.self_attn.k_proj.weight: shape [64, 48], expected [32, 48]",
        "unexpected tensor extra.bias [3]",
        "unexpected tensor model.language_model.layers.3.mlp.up_proj.weight [96, 48]",
    };
    CHECK(problems_of(cfg, dir) == expected);
    const aq::safetensors_checkpoint checkpoint(dir);
    std::string message = dir.string() + ": checkpoint does not match config.json (5 problems)";
    for (const auto& line : expected) message += "\n  " + line;
    CHECK_THROWS_WITH_AS(aq::qwen3_vl::check_parameters(cfg, checkpoint), message.c_str(), aq::error);
  }
}

TEST_CASE("element counts that overflow int64 are errors naming the parameter") {
  const aq::qwen3_vl::parameter_spec huge{"model.language_model.embed_tokens.weight", {std::int64_t{1} << 62, 2560}};
  CHECK_THROWS_WITH_AS(huge.numel(),
                       "parameter model.language_model.embed_tokens.weight: shape [4611686018427387904, 2560] has more "
                       "elements than int64 holds",
                       aq::error);
  auto cfg = config_4b();  // a config built in code skips the parser's size checks; counting still may not wrap
  cfg.text.vocab_size = std::int64_t{1} << 62;
  CHECK_THROWS_WITH_AS(aq::qwen3_vl::count_parameters(cfg),
                       doctest::Contains("parameter model.language_model.embed_tokens.weight: shape [4611686018427387904, 2560]"),
                       aq::error);
  cfg = config_4b();
  cfg.vision.patch_size = INT64_MAX;
  CHECK_THROWS_WITH_AS(aq::qwen3_vl::count_parameters(cfg), doctest::Contains("parameter model.visual.patch_embed.proj.weight"),
                       aq::error);
}

TEST_CASE("a config far larger than its checkpoint is refused in one line; long problem lists are capped") {
  auto cfg = aq::read_qwen3_vl_config(tiny_tied);
  const aq::safetensors_checkpoint checkpoint(tiny_tied);
  const auto totals = aq::qwen3_vl::expected_totals(cfg);
  CHECK(totals.tensors == static_cast<std::int64_t>(aq::qwen3_vl::expected_parameters(cfg).size()));
  CHECK(totals.elements == aq::qwen3_vl::count_parameters(cfg).total);

  SUBCASE("100,000 layers against a 2-layer checkpoint: one line, no list") {
    cfg.text.num_hidden_layers = 100'000;
    std::string message;
    try {
      aq::qwen3_vl::check_parameters(cfg, checkpoint);
    } catch (const aq::error& e) {
      message = e.what();
    }
    CHECK(message.find(tiny_tied.string() + ": checkpoint does not match config.json: the config implies ") == 0);
    CHECK(message.find(" tensors of " + std::to_string(checkpoint.total_bytes()) + " bytes") != std::string::npos);
    CHECK(std::count(message.begin(), message.end(), '\n') == 0);
  }
  SUBCASE("two layers too many: 22 missing tensors, 20 listed") {
    cfg.text.num_hidden_layers += 2;
    std::string message;
    try {
      aq::qwen3_vl::check_parameters(cfg, checkpoint);
    } catch (const aq::error& e) {
      message = e.what();
    }
    CHECK(message.find("checkpoint does not match config.json (22 problems)\n") != std::string::npos);
    CHECK(std::count(message.begin(), message.end(), '\n') == 21);
    CHECK(message.substr(message.rfind('\n')) == "\n  and 2 more");
  }
}

TEST_CASE("a NaN or infinite weight is an error naming the tensor when the model loads it") {
  const auto cfg = aq::read_qwen3_vl_config(tiny_tied);
  auto specs = aq::qwen3_vl::expected_parameters(cfg);
  const fs::path dir = fs::temp_directory_path() / "aq_test_qwen3_vl_parameters_nan";
  fs::remove_all(dir);
  fs::create_directories(dir);
  aq::safetensors_writer writer;
  for (const auto& spec : specs) {
    std::vector<float> values(static_cast<std::size_t>(spec.numel()), 0.5f);
    if (spec.name == "model.language_model.layers.1.self_attn.q_proj.weight") values[5] = std::nanf("");
    writer.add_rounded(spec.name, aq::dtype_bf16, spec.shape, values);
  }
  writer.write(dir / "model.safetensors");
  const aq::safetensors_checkpoint checkpoint(dir);
  CHECK_NOTHROW(aq::qwen3_vl::check_parameters(cfg, checkpoint));  // names and shapes are right
  const auto source = aq::qwen3_vl::checkpoint_weight_source(checkpoint);
  CHECK_THROWS_WITH_AS(aq::qwen3_vl::load_text_weights(cfg, source),
                       ((dir / "model.safetensors").string() +
                        ": tensor model.language_model.layers.1.self_attn.q_proj.weight: nan at element 5 (weights must be finite)")
                           .c_str(),
                       aq::error);
}

}  // namespace test_qwen3_vl_parameters
