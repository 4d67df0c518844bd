// The layer-group axis of the depth-ordered plots (the score heatmap and the bits plot): short
// group names under their columns, thinned so that several hundred groups stay readable.
#pragma once

#include <string>
#include <vector>

#include "aq/report/recipe_grid.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/svg/svg_axis.hpp"
#include "aq/report/svg/svg_writer.hpp"

namespace aq::io {

// One label per `stride` groups (svg::label_stride), columns `column_w` wide from `left`, written
// downwards from `y`; the axis title at `title_y`.
inline void draw_group_labels(svg::writer& svg, const report_model& model, double left, double column_w, double y,
                              double title_y) {
  std::vector<double> centres;
  std::vector<std::string> labels;
  for (std::size_t g = 0; g < model.groups.size(); ++g) {
    centres.push_back(left + column_w * (static_cast<double>(g) + 0.5));
    labels.push_back(short_group_label(model.groups[g].name));
  }
  const std::size_t stride = svg::label_stride(column_w);
  svg::draw_category_labels(svg, centres, labels, y, stride,
                            stride == 1 ? "layer group (depth order)"
                                        : "layer group (depth order; one label per " + std::to_string(stride) + " groups)",
                            title_y);
}

}  // namespace aq::io
