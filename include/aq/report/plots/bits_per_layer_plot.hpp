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
#include "aq/report/plots/group_axis.hpp"
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

// Each group's chosen recipe (its column in recipe_columns) and that recipe's bits; groups
// without a chosen recipe, or whose recipe states no bits, get no bar.
struct chosen_bar {
  std::string format;
  std::size_t recipe = 0;  // recipes.size() when no group offers it (a chosen mix may name any recipe)
  std::optional<double> bits;
};

inline std::vector<chosen_bar> chosen_bars(const report_model& model, const evaluation_report& evaluation,
                                           const std::vector<std::string>& recipes) {
  const std::vector<std::optional<std::string>> chosen = chosen_formats(model, evaluation);
  std::vector<chosen_bar> bars(model.groups.size());
  for (std::size_t g = 0; g < bars.size(); ++g) {
    if (!chosen[g]) continue;
    bars[g].format = *chosen[g];
    bars[g].recipe = static_cast<std::size_t>(std::find(recipes.begin(), recipes.end(), *chosen[g]) - recipes.begin());
    if (const candidate_stat* c = find_candidate(model.groups[g], *chosen[g])) bars[g].bits = candidate_bits(*c);
    if (!bars[g].bits) bars[g].bits = effective_bits_of(*chosen[g]);
  }
  return bars;
}

inline void draw_bars(svg::writer& svg, const svg::plot_area& area, const svg::linear_scale& y, double bar_w,
                      const report_model& model, const std::vector<chosen_bar>& bars) {
  svg.begin_group({{"class", "bars"}});
  for (std::size_t g = 0; g < bars.size(); ++g) {
    if (!bars[g].bits) continue;
    const double bits = *bars[g].bits;
    const double x = area.left + bar_w * static_cast<double>(g);
    svg.element("rect",
                {{"class", "bit-bar"}, {"x", svg::number(x + bar_w * 0.1)}, {"y", svg::number(y(bits))},
                 {"width", svg::number(bar_w * 0.8)}, {"height", svg::number(area.bottom - y(bits))},
                 {"fill", recipe_colour(bars[g].recipe)}},
                layer_display_name(model.groups[g].name) + "\n" + bars[g].format + "\n" +
                    python_float_repr(bits) + " bits");
  }
  svg.end_group();
  svg.element("line", {{"class", "baseline"}, {"x1", svg::number(area.left)}, {"y1", svg::number(area.bottom)},
                       {"x2", svg::number(area.right)}, {"y2", svg::number(area.bottom)}, {"stroke", "#333333"}});
}

// The recipes some group chose, in candidate order, with their bar colour.
inline void bars_legend(svg::writer& svg, double x, double y, const std::vector<std::string>& recipes,
                        const std::vector<chosen_bar>& bars) {
  std::vector<bool> used(recipes.size(), false);
  for (const chosen_bar& bar : bars) {
    if (bar.bits && bar.recipe < used.size()) used[bar.recipe] = true;
  }
  svg.begin_group({{"class", "legend"}});
  for (std::size_t r = 0; r < recipes.size(); ++r) {
    if (!used[r]) continue;
    const std::string name = recipe_short_name(recipes[r]);
    svg.element("rect", {{"x", svg::number(x)}, {"y", svg::number(y - 9)}, {"width", "12"}, {"height", "12"},
                         {"fill", recipe_colour(r)}});
    svg.text({{"x", svg::number(x + 16)}, {"y", svg::number(y + 1)}}, name);
    x += 30 + 7.0 * static_cast<double>(name.size());
  }
  svg.end_group();
}

}  // namespace detail

inline std::string render_bits_per_layer_svg(const report_model& model, const evaluation_report& evaluation) {
  const std::vector<std::string> recipes = recipe_columns(model);
  const std::vector<detail::chosen_bar> bars = detail::chosen_bars(model, evaluation, recipes);
  // Bars as wide as the heatmap's columns, so the two plots line up by eye.
  const double bar_w = std::clamp(1000.0 / static_cast<double>(std::max<std::size_t>(bars.size(), 1)), 3.0, 28.0);
  const svg::plot_area area{70, 50, 70 + bar_w * static_cast<double>(bars.size()), 370};
  constexpr double label_room = 130;
  const double width = std::max(area.right + 40, 600.0);
  const double height = area.bottom + label_room + 70;
  double max_bits = std::max(16.0, model.scheme.auto_quantize_bits);
  for (const detail::chosen_bar& bar : bars) max_bits = std::max(max_bits, bar.bits.value_or(0.0));
  const svg::linear_scale y(0.0, max_bits, area.bottom, area.top, 8);

  svg::writer svg(width, height, "Effective bits of the chosen recipe per layer group", "aq-plot bits-plot");
  svg::draw_heading(svg, width, "Effective bits of the chosen recipe per layer group (depth order)");
  svg::draw_axis(svg, area, svg::side::left, svg::place_ticks(y), "effective bits");
  detail::draw_bars(svg, area, y, bar_w, model, bars);
  const double budget = model.scheme.auto_quantize_bits, reached = model.autoquant_state.effective_bits;
  if (budget > 0.0) {
    detail::horizontal_marker(svg, area, y(budget), "budget-line", "#d62728",
                              "budget " + python_float_repr(budget) + " bits");
  }
  if (reached > 0.0 && reached != budget) {
    detail::horizontal_marker(svg, area, y(reached), "reached-line", "#555555",
                              "reached " + python_float_repr(reached) + " bits", true);
  }
  draw_group_labels(svg, model, area.left, bar_w, area.bottom + 6, area.bottom + label_room + 20);
  detail::bars_legend(svg, area.left, height - 22, recipes, bars);
  return svg.finish();
}

}  // namespace aq::io
