// aq umbrella header: everything a user of the library needs.
// checkpoint + captions + formats + budget -> io -> model -> calib -> score -> search -> report
#pragma once

#include "aq/core/atomic_file.hpp"
#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"

// Checkpoints and model description
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/io/mapped_file.hpp"
#include "aq/io/regular_file.hpp"
#include "aq/model/attention_config.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

// Reports
#include "aq/report/json_writer.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/sensitivity_report.hpp"

// Export: a chosen mix as a checkpoint a serving stack loads (ModelOpt, compressed-tensors)
#include "aq/export/export_checkpoint.hpp"

// Evaluation reports: evaluation.json, evaluation.md, report.html and the SVG plots
#include "aq/report/evaluation_files.hpp"
#include "aq/report/evaluation_inputs.hpp"
#include "aq/report/evaluation_json.hpp"
#include "aq/report/evaluation_markdown.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/evaluation_table.hpp"
#include "aq/report/html_report.hpp"
#include "aq/report/plots/bits_per_layer_plot.hpp"
#include "aq/report/plots/group_axis.hpp"
#include "aq/report/plots/pareto_plot.hpp"
#include "aq/report/plots/score_heatmap.hpp"
#include "aq/report/recipe_grid.hpp"
#include "aq/report/svg/svg_axis.hpp"
#include "aq/report/svg/svg_colormap.hpp"
#include "aq/report/svg/svg_scale.hpp"
#include "aq/report/svg/svg_writer.hpp"

// Calibration data
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/io/data/chat_template.hpp"
#include "aq/io/image/image.hpp"
#include "aq/io/image/image_preprocess.hpp"

// Formats, quantizers, recipes
#include "aq/formats/all_formats.hpp"
#include "aq/formats/e2m1.hpp"
#include "aq/formats/e2m3.hpp"
#include "aq/formats/e3m2.hpp"
#include "aq/formats/e8m0.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipe_registry.hpp"

// Allocation
#include "aq/search/allocation_problem.hpp"
#include "aq/search/knapsack.hpp"
#include "aq/search/pareto.hpp"

// Tokenizer
#include "aq/io/tokenizer/tokenizer.hpp"

// The built-in Qwen3-VL model (CPU backend)
#include "aq/backend/cpu/attention.hpp"
#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/backend/cpu/gelu.hpp"
#include "aq/backend/cpu/gemm.hpp"
#include "aq/backend/cpu/layer_norm.hpp"
#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/qwen3_vl/vision_model.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/rms_norm.hpp"
#include "aq/backend/cpu/rope.hpp"
#include "aq/backend/cpu/swiglu.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/checkpoint_source.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/special_tokens.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"
#include "aq/model/qwen3_vl/vision_geometry.hpp"
#include "aq/model/qwen3_vl/vision_weights.hpp"

// AutoQuant: scorers and the engine
#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/score/calibrated_recipes.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/backend/cpu/score/gradient_scorer.hpp"
#include "aq/backend/cpu/score/kl_div_scorer.hpp"
#include "aq/backend/cpu/score/quantized_linear.hpp"
#include "aq/core/progress.hpp"
#include "aq/engine/engine.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/score/scoring_backend.hpp"
#include "aq/search/cost_model.hpp"
#include "aq/search/custom_recipe_names.hpp"
#include "aq/search/recipe_assignment.hpp"
#include "aq/search/recipe_spelling.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"
