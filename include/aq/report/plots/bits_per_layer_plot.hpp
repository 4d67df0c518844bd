// bits_per_layer.svg: the effective bits of each group's chosen recipe in depth order, one bar a
// group coloured by recipe, with the budget as a horizontal line. The budget bounds the weight-
// weighted mean, so bars above the line are paid for by (larger) groups below it.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "aq/report/evaluation_model.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/recipe_grid.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/sensitivity_report.hpp"
#include "aq/report/svg/svg_axis.hpp"
#include "aq/report/svg/svg_scale.hpp"
#include "aq/report/svg/svg_writer.hpp"

namespace aq::io {

namespace detail {

// Tableau's ten categorical colours: one a recipe, repeating after ten.
inline std::string recipe_colour(std::size_t index) {
  static constexpr const char* palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                            "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return palette[index % 10];
}

// A dashed line across the plot, labelled at its right end (or left: two lines may be close).
inline void horizontal_marker(svg::writer& svg, const svg::plot_area& area, double y, const std::string& css_class,
                              const std::string& colour, const std::string& label, bool label_left = false) {
  svg.element("line", {{"class", css_class}, {"x1", svg::number(area.left)}, {"y1", svg::number(y)},
                       {"x2", svg::number(area.right)}, {"y2", svg::number(y)}, {"stroke", colour},
                       {"stroke-width", "2"}, {"stroke-dasharray", "6 4"}});
  svg.text({{"x", svg::number(label_left ? area.left + 4 : area.right - 4)}, {"y", svg::number(y - 5)},
            {"text-anchor", label_left ? "start" : "end"}, {"fill", colour}, {"font-weight", "bold"},
            {"stroke", "#ffffff"}, {"stroke-width", "3"}, {"paint-order", "stroke"}},
           label);
}

}  // namespace detail

inline std::string render_bits_per_layer_svg(const report_model& model, const evaluation_report& evaluation) {
  const std::vector<std::string> recipes = recipe_columns(model);
  const std::vector<std::optional<std::string>> chosen = chosen_formats(model, evaluation);
  const std::size_t n = model.groups.size();
  const double bar_w = std::clamp(1000.0 / static_cast<double>(std::max<std::size_t>(n, 1)), 3.0, 28.0);
  const svg::plot_area area{70, 50, 70 + bar_w * static_cast<double>(n), 370};
  const double width = std::max(area.right + 40, 600.0);
  constexpr double label_room = 130;
  const double height = area.bottom + label_room + 70;

  std::vector<std::optional<double>> bits(n);
  double max_bits = std::max(16.0, model.scheme.auto_quantize_bits);
  for (std::size_t g = 0; g < n; ++g) {
    if (!chosen[g]) continue;
    if (const candidate_stat* c = find_candidate(model.groups[g], *chosen[g])) bits[g] = candidate_bits(*c);
    if (!bits[g]) bits[g] = effective_bits_of(*chosen[g]);
    if (bits[g]) max_bits = std::max(max_bits, *bits[g]);
  }
  const svg::linear_scale y(0.0, max_bits, area.bottom, area.top, 8);

  svg::writer svg(width, height, "Effective bits of the chosen recipe per layer group", "aq-plot bits-plot");
  svg::draw_heading(svg, width, "Effective bits of the chosen recipe per layer group (depth order)");
  svg::draw_axis(svg, area, svg::side::left, svg::place_ticks(y), "effective bits");
  svg.begin_group({{"class", "bars"}});
  std::vector<bool> used(recipes.size(), false);
  for (std::size_t g = 0; g < n; ++g) {
    if (!bits[g]) continue;
    const auto column = static_cast<std::size_t>(std::find(recipes.begin(), recipes.end(), *chosen[g]) - recipes.begin());
    if (column < used.size()) used[column] = true;
    const double x = area.left + bar_w * static_cast<double>(g);
    svg.element("rect",
                {{"class", "bit-bar"}, {"x", svg::number(x + bar_w * 0.1)}, {"y", svg::number(y(*bits[g]))},
                 {"width", svg::number(bar_w * 0.8)}, {"height", svg::number(area.bottom - y(*bits[g]))},
                 {"fill", detail::recipe_colour(column)}},
                layer_display_name(model.groups[g].name) + "\n" + *chosen[g] + "\n" + python_float_repr(*bits[g]) +
                    " bits");
  }
  svg.end_group();
  svg.element("line", {{"class", "baseline"}, {"x1", svg::number(area.left)}, {"y1", svg::number(area.bottom)},
                       {"x2", svg::number(area.right)}, {"y2", svg::number(area.bottom)}, {"stroke", "#333333"}});
  if (model.scheme.auto_quantize_bits > 0.0) {
    detail::horizontal_marker(svg, area, y(model.scheme.auto_quantize_bits), "budget-line", "#d62728",
                              "budget " + python_float_repr(model.scheme.auto_quantize_bits) + " bits");
  }
  if (model.autoquant_state.effective_bits > 0.0 &&
      model.autoquant_state.effective_bits != model.scheme.auto_quantize_bits) {
    detail::horizontal_marker(svg, area, y(model.autoquant_state.effective_bits), "reached-line", "#555555",
                              "reached " + python_float_repr(model.autoquant_state.effective_bits) + " bits", true);
  }

  std::vector<double> centres;
  std::vector<std::string> labels;
  for (std::size_t g = 0; g < n; ++g) {
    centres.push_back(area.left + bar_w * (static_cast<double>(g) + 0.5));
    labels.push_back(short_group_label(model.groups[g].name));
  }
  const std::size_t stride = svg::label_stride(bar_w);
  svg::draw_category_labels(svg, centres, labels, area.bottom + 6, stride,
                            stride == 1 ? "layer group (depth order)"
                                        : "layer group (depth order; one label per " + std::to_string(stride) + " groups)",
                            area.bottom + label_room + 20);

  // Legend: the recipes some group chose, in candidate order.
  svg.begin_group({{"class", "legend"}});
  double lx = area.left;
  const double ly = height - 22;
  for (std::size_t r = 0; r < recipes.size(); ++r) {
    if (!used[r]) continue;
    const std::string name = recipe_short_name(recipes[r]);
    svg.element("rect", {{"x", svg::number(lx)}, {"y", svg::number(ly - 9)}, {"width", "12"}, {"height", "12"},
                         {"fill", detail::recipe_colour(r)}});
    svg.text({{"x", svg::number(lx + 16)}, {"y", svg::number(ly + 1)}}, name);
    lx += 30 + 7.0 * static_cast<double>(name.size());
  }
  svg.end_group();
  return svg.finish();
}

}  // namespace aq::io
