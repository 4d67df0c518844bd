// How the engine runs the model: batch i forward (and, for gradient scoring, the backward of the
// LM loss) with an observer that sees every quantizable linear. Converts io's calibration batches
// to the CPU Qwen3-VL model's inputs once; calibration and scoring then only name batch indices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "aq/backend/cpu/attention.hpp"
#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/model/causal_lm_targets.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"
#include "aq/model/qwen3_vl/vl_batch_pack.hpp"

namespace aq::autoquant {

// What a pass over a batch is for: logits of every token (KL-div scores), max calibration
// (forward, no loss), or the loss and its input-gradient backward (gradient scores; observers then
// see dL/dY). Calibration and gradient passes may drop score-neutral padding; logits passes never.
enum class model_pass { logits, calibrate, gradient };

// run(i, pass, observer): batch i through the model for `pass`. targets[i]: batch i's next-token
// label of every row of its logits that is a token itself (attended_targets; evaluation reads
// them; ignore_index where there is none).
struct model_runner {
  std::size_t num_batches = 0;
  std::function<qwen3_vl::text_result(std::size_t batch, model_pass pass, qwen3_vl::linear_observer* observer)> run;
  std::vector<lm_targets> targets;
};

// One calibration batch as the CPU model's inputs.
inline qwen3_vl::text_batch to_text_batch(const io::calib_batch& b) {
  const std::int64_t n = b.batch_size * b.seq_len;
  if (b.batch_size <= 0 || b.seq_len <= 0 || static_cast<std::int64_t>(b.input_ids.size()) != n ||
      static_cast<std::int64_t>(b.attention_mask.size()) != n || static_cast<std::int64_t>(b.labels.size()) != n) {
    throw error("calibration batch: input_ids, attention_mask and labels must hold batch_size x seq_len = " +
                std::to_string(n) + " entries");
  }
  qwen3_vl::text_batch t;
  t.batch = b.batch_size;
  t.seq = b.seq_len;
  t.input_ids.assign(b.input_ids.begin(), b.input_ids.end());
  for (const std::int32_t m : b.attention_mask) t.attention_mask.push_back(m != 0 ? 1 : 0);
  t.labels.assign(b.labels.begin(), b.labels.end());
  return t;
}

inline std::optional<qwen3_vl::image_batch> to_image_batch(const io::calib_batch& b) {
  if (b.vision.grid_thw.empty()) return std::nullopt;
  qwen3_vl::image_batch images;
  images.pixel_values = tensor({b.vision.rows, b.vision.cols});
  if (b.vision.pixel_values.size() != static_cast<std::size_t>(images.pixel_values.numel())) {
    throw error("calibration batch: pixel_values hold " + std::to_string(b.vision.pixel_values.size()) +
                " values, expected rows x cols = " + std::to_string(images.pixel_values.numel()));
  }
  images.pixel_values.storage() = b.vision.pixel_values;
  for (const auto& g : b.vision.grid_thw) images.grids.push_back(g);
  return images;
}

// The model must outlive the runner. masked_rows: how fully masked (left-padding) query rows
// attend: zero = torch SDPA (transformers' default attention for Qwen3-VL), attend_all = eager.
// trim_padding: calibration and gradient passes drop the leading padding that
// cannot change their result (qwen3_vl::trim_padding; SDPA masking only).
inline model_runner make_model_runner(const qwen3_vl::vl_model& model, std::span<const io::calib_batch> batches,
                                      cpu::masked_row_policy masked_rows = cpu::masked_row_policy::zero,
                                      bool trim_padding = true) {
  struct converted {
    std::vector<qwen3_vl::text_batch> text;
    std::vector<std::optional<qwen3_vl::image_batch>> images;
  };
  auto data = std::make_shared<converted>();
  for (const io::calib_batch& b : batches) {
    data->text.push_back(to_text_batch(b));
    data->images.push_back(to_image_batch(b));
  }
  model_runner runner;
  runner.num_batches = batches.size();
  for (const qwen3_vl::text_batch& t : data->text) {
    runner.targets.push_back(attended_targets(
        causal_lm_targets(t.labels, t.batch, t.seq, model.model_config().text.vocab_size, "calibration batch"),
        t.attention_mask));
  }
  const bool trim = trim_padding && masked_rows == cpu::masked_row_policy::zero;
  runner.run = [&model, data, masked_rows, trim](std::size_t i, model_pass pass, qwen3_vl::linear_observer* observer) {
    qwen3_vl::text_batch batch = data->text.at(i);
    const bool loss_backward = pass == model_pass::gradient;
    if (!loss_backward) batch.labels.clear();
    const qwen3_vl::run_options options{.masked_rows = masked_rows, .backward = loss_backward};
    const auto& images = data->images.at(i);
    if (trim && pass != model_pass::logits) {
      // Image batches keep the M-RoPE positions of their untrimmed rows.
      const qwen3_vl::vl_pack_ids ids{model.model_config().image_token_id, model.model_config().vision.spatial_merge_size};
      batch = images ? qwen3_vl::positioned_batch(std::move(batch), &*images, ids, true) : qwen3_vl::trim_padding(batch);
    }
    return model.run(std::move(batch), images ? &*images : nullptr, options, observer);
  };
  return runner;
}

}  // namespace aq::autoquant
