// Qwen3-VL end to end on the CPU: the vision tower's visual tokens replace the image
// placeholders, its DeepStack features are added after the first decoder layers, and the loss
// gradient flows back from the decoder into the tower. Text-only batches skip the tower.
#pragma once

#include <cstdint>

#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/qwen3_vl/vision_model.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"

namespace aq::qwen3_vl {

class vl_model {
 public:
  vl_model(const config& cfg, const text_weights& text, const vision_weights& vision)
      : cfg_(cfg), text_(cfg, text), vision_(cfg, vision) {}

  const config& model_config() const { return cfg_; }

  // position_ids empty: computed with rope_position_ids() from the ids and image grids.
  text_result run(text_batch batch, const image_batch* images, const run_options& options = {},
                  linear_observer* observer = nullptr) const {
    if (images == nullptr || images->grids.empty()) return text_.run(batch, options, observer);
    if (batch.position_ids.empty()) {
      batch.position_ids = rope_position_ids(batch.input_ids, batch.attention_mask, batch.batch, batch.seq,
                                             cfg_.image_token_id, images->grids, cfg_.vision.spatial_merge_size);
    }
    vision_activations va = vision_.forward(images->pixel_values, images->grids, observer);
    visual_inputs visual;
    visual.embeds = &va.out.embeds;
    for (const tensor& ds : va.out.deepstack) visual.deepstack.push_back(&ds);
    text_result result = text_.run(batch, options, observer, visual);
    if (!options.backward || batch.labels.empty()) return result;
    // dL/d visual tokens = the embedding gradient at the placeholder rows, in (b, s) order.
    const std::int64_t H = cfg_.text.hidden_size;
    tensor d_embeds({va.out.embeds.dim(0), H});
    std::int64_t r = 0;
    for (std::size_t i = 0; i < batch.input_ids.size(); ++i) {
      if (batch.input_ids[i] != cfg_.image_token_id) continue;
      std::copy_n(result.inputs_embeds_grad.data() + static_cast<std::int64_t>(i) * H, H, d_embeds.data() + r * H);
      ++r;
    }
    vision_.backward(va, d_embeds, result.deepstack_grads, observer);
    return result;
  }

 private:
  config cfg_;
  text_model text_;
  vision_model vision_;
};

}  // namespace aq::qwen3_vl
