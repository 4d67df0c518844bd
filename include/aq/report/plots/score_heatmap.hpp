// scores_heatmap.svg: every group's score for every recipe, groups along x in depth order (the long
// axis: a Qwen3-VL model has several hundred), recipes as rows. Colour is the score on a log
// scale; the chosen recipe of each group is outlined. Every cell has a tooltip with its numbers.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "aq/report/evaluation_model.hpp"
#include "aq/report/plots/group_axis.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/recipe_grid.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/svg/svg_axis.hpp"
#include "aq/report/svg/svg_colormap.hpp"
#include "aq/report/svg/svg_scale.hpp"
#include "aq/report/svg/svg_writer.hpp"

namespace aq::io {

namespace detail {

inline constexpr const char* zero_score_colour = "#d9d9d9";  // score 0 (NONE): outside the log scale

// The colour scale's bounds: the largest score, and the smallest positive one but at most eight
// decades below it, so one tiny score does not wash out every other cell.
inline svg::log_unit_scale heatmap_colour_scale(const report_model& model) {
  double lo = 0.0, hi = 0.0;
  for (const group_sensitivity& g : model.groups) {
    for (const candidate_stat& c : g.candidates) {
      if (c.score > 0.0 && (lo == 0.0 || c.score < lo)) lo = c.score;
      hi = std::max(hi, c.score);
    }
  }
  if (hi <= 0.0) return {1e-6, 1.0};
  return {std::max(lo, hi * 1e-8), hi};
}

// A vertical colour bar from the scale's low to high end, with a label per decade (or fewer).
inline void colour_bar(svg::writer& svg, const svg::log_unit_scale& scale, double x, double top, double bottom) {
  svg.raw("<defs><linearGradient id=\"aq-heatmap-gradient\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">");
  for (int i = 0; i <= 8; ++i) {
    svg.raw("<stop offset=\"" + svg::number(i / 8.0) + "\" stop-color=\"" + svg::viridis(i / 8.0) + "\"/>");
  }
  svg.raw("</linearGradient></defs>\n");
  svg.begin_group({{"class", "colour-bar"}});
  svg.element("rect", {{"x", svg::number(x)}, {"y", svg::number(top)}, {"width", "14"},
                       {"height", svg::number(bottom - top)}, {"fill", "url(#aq-heatmap-gradient)"}});
  const int first = static_cast<int>(std::ceil(std::log10(scale.lo()) - 1e-9));
  const int last = static_cast<int>(std::floor(std::log10(scale.hi()) + 1e-9));
  const int stride = std::max(1, (last - first + 5) / 6);
  for (int k = first; k <= last; k += stride) {
    const double v = std::pow(10.0, k);
    const double y = bottom - scale(v) * (bottom - top);
    svg.element("line", {{"x1", svg::number(x + 14)}, {"y1", svg::number(y)}, {"x2", svg::number(x + 18)},
                         {"y2", svg::number(y)}, {"stroke", "#333333"}});
    svg.text({{"x", svg::number(x + 21)}, {"y", svg::number(y + 4)}, {"font-size", "10"}}, svg::tick_label(v));
  }
  svg.element("rect", {{"x", svg::number(x)}, {"y", svg::number(bottom + 12)}, {"width", "14"}, {"height", "10"},
                       {"fill", zero_score_colour}});
  svg.text({{"x", svg::number(x + 21)}, {"y", svg::number(bottom + 21)}, {"font-size", "10"}}, "0");
  svg.text({{"class", "axis-title"}, {"x", svg::number(x + 7)}, {"y", svg::number(top - 10)}, {"text-anchor", "middle"},
            {"font-size", "11"}},
           "score");
  svg.end_group();
}

// Where the grid lies: one column a group (narrower with more groups, 1000 px of columns at
// most from 36 groups on), one row a recipe, recipe names at the left, group labels below.
struct heatmap_layout {
  double cell_w = 0, cell_h = 26, left = 210, top = 50, label_room = 130;
  double grid_right = 0, grid_bottom = 0, width = 0, height = 0;

  heatmap_layout(std::size_t groups, std::size_t recipes)
      : cell_w(std::clamp(1000.0 / static_cast<double>(std::max<std::size_t>(groups, 1)), 3.0, 28.0)),
        grid_right(left + cell_w * static_cast<double>(groups)),
        grid_bottom(top + cell_h * static_cast<double>(recipes)),
        width(std::max(grid_right + 100, 600.0)),
        height(grid_bottom + label_room + 40) {}
};

inline void draw_recipe_labels(svg::writer& svg, const heatmap_layout& at, const std::vector<std::string>& recipes) {
  svg.begin_group({{"class", "row-labels"}, {"font-size", "11"}});
  for (std::size_t r = 0; r < recipes.size(); ++r) {
    svg.text({{"x", svg::number(at.left - 8)}, {"y", svg::number(at.top + at.cell_h * (r + 0.5) + 4)},
              {"text-anchor", "end"}},
             recipe_short_name(recipes[r]));
  }
  svg.end_group();
}

// The cells, each with a tooltip; returns the top-left corners of the chosen ones.
inline std::vector<std::pair<double, double>> draw_cells(svg::writer& svg, const heatmap_layout& at,
                                                         const report_model& model,
                                                         const std::vector<std::string>& recipes,
                                                         const std::vector<std::optional<std::string>>& chosen) {
  const svg::log_unit_scale colour = heatmap_colour_scale(model);
  std::vector<std::pair<double, double>> chosen_cells;
  svg.begin_group({{"class", "cells"}});
  for (std::size_t g = 0; g < model.groups.size(); ++g) {
    const group_sensitivity& group = model.groups[g];
    const double x = at.left + at.cell_w * static_cast<double>(g);
    for (std::size_t r = 0; r < recipes.size(); ++r) {
      const candidate_stat* c = find_candidate(group, recipes[r]);
      if (c == nullptr) continue;  // the group does not offer this recipe: left blank
      const double y = at.top + at.cell_h * static_cast<double>(r);
      const bool is_chosen = chosen[g] && *chosen[g] == recipes[r];
      if (is_chosen) chosen_cells.push_back({x, y});
      svg.element("rect",
                  {{"class", "cell"}, {"x", svg::number(x)}, {"y", svg::number(y)}, {"width", svg::number(at.cell_w)},
                   {"height", svg::number(at.cell_h)},
                   {"fill", c->score > 0.0 ? svg::viridis(colour(c->score)) : zero_score_colour}},
                  layer_display_name(group.name) + "\n" + c->format + "\nscore " + python_float_repr(c->score) +
                      (is_chosen ? "\n(chosen)" : ""));
    }
  }
  svg.end_group();
  return chosen_cells;
}

// Drawn after every cell, so no neighbour paints over an outline.
inline void draw_chosen_outlines(svg::writer& svg, const heatmap_layout& at,
                                 const std::vector<std::pair<double, double>>& corners) {
  svg.begin_group({{"class", "chosen-cells"}});
  for (const auto& [x, y] : corners) {
    svg.element("rect", {{"class", "chosen-cell"}, {"x", svg::number(x + 0.75)}, {"y", svg::number(y + 0.75)},
                         {"width", svg::number(std::max(at.cell_w - 1.5, 0.5))}, {"height", svg::number(at.cell_h - 1.5)},
                         {"fill", "none"}, {"stroke", "#ff2d2d"}, {"stroke-width", "1.5"}});
  }
  svg.end_group();
}

}  // namespace detail

inline std::string render_score_heatmap_svg(const report_model& model, const evaluation_report& evaluation) {
  const std::vector<std::string> recipes = recipe_columns(model);
  const detail::heatmap_layout at(model.groups.size(), recipes.size());
  svg::writer svg(at.width, at.height, "Score of every recipe for every layer group", "aq-plot score-heatmap");
  svg::draw_heading(svg, at.width, "Score per layer group (x, depth order) and recipe (y); chosen recipe outlined");
  detail::draw_recipe_labels(svg, at, recipes);
  const auto chosen_cells = detail::draw_cells(svg, at, model, recipes, chosen_formats(model, evaluation));
  detail::draw_chosen_outlines(svg, at, chosen_cells);
  draw_group_labels(svg, model, at.left, at.cell_w, at.grid_bottom + 6, at.grid_bottom + at.label_room + 20);
  detail::colour_bar(svg, detail::heatmap_colour_scale(model), at.grid_right + 24, at.top + 14,
                     std::max(at.grid_bottom, at.top + 160) - 24);
  return svg.finish();
}

}  // namespace aq::io
