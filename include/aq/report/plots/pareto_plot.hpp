// pareto.svg: what the search predicted against what the evaluation measured, over effective bits.
// Left axis: the predicted total score (the search's Pareto front as a step line, and the
// predicted score of every evaluated mix); right axis: each mix's measured mean KL. A good
// predictor puts both markers of a mix in the same order along x; the chosen mix is ringed.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "aq/report/evaluation_model.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/recipe_grid.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/svg/svg_axis.hpp"
#include "aq/report/svg/svg_scale.hpp"
#include "aq/report/svg/svg_writer.hpp"

namespace aq::io {

namespace detail {

inline constexpr const char* score_colour = "#1f77b4";  // predicted: blue
inline constexpr const char* kl_colour = "#d95f02";     // measured: orange
inline constexpr const char* chosen_colour = "#d62728";

// The label of a reference mix: its recipe for a uniform mix, else its name.
inline std::string reference_label(const mix_evaluation& mix) {
  static constexpr std::string_view prefix = "uniform ";
  if (mix.kind == mix_kind::uniform && std::string_view(mix.name).starts_with(prefix)) {
    return recipe_short_name(std::string_view(mix.name).substr(prefix.size()));
  }
  return mix.name;
}

// A diamond of half-size r centred on (x, y).
inline std::string diamond(double x, double y, double r) {
  return svg::points({{x, y - r}, {x + r, y}, {x, y + r}, {x - r, y}});
}

inline void pareto_legend(svg::writer& svg, double x, double y) {
  svg.begin_group({{"class", "legend"}});
  svg.element("polyline", {{"points", svg::points({{x, y}, {x + 24, y}})}, {"stroke", "#7f7f7f"}, {"fill", "none"},
                           {"stroke-width", "2"}});
  svg.text({{"x", svg::number(x + 30)}, {"y", svg::number(y + 4)}}, "Pareto front (predicted score)");
  x += 230;
  svg.element("circle", {{"cx", svg::number(x + 12)}, {"cy", svg::number(y)}, {"r", "5"}, {"fill", score_colour}});
  svg.text({{"x", svg::number(x + 24)}, {"y", svg::number(y + 4)}}, "mix, predicted score");
  x += 170;
  svg.element("polygon", {{"points", diamond(x + 12, y, 6)}, {"fill", kl_colour}});
  svg.text({{"x", svg::number(x + 24)}, {"y", svg::number(y + 4)}}, "mix, measured mean KL");
  x += 180;
  svg.element("circle", {{"cx", svg::number(x + 12)}, {"cy", svg::number(y)}, {"r", "9"}, {"fill", "none"},
                         {"stroke", chosen_colour}, {"stroke-width", "2"}});
  svg.text({{"x", svg::number(x + 26)}, {"y", svg::number(y + 4)}}, "chosen mix");
  svg.end_group();
}

}  // namespace detail

inline std::string render_pareto_svg(const report_model& model, const evaluation_report& evaluation) {
  constexpr double width = 900, height = 540;
  const svg::plot_area area{90, 50, 800, 440};
  const std::vector<pareto_point> front = model.pareto_front.value_or(std::vector<pareto_point>{});

  std::vector<double> bits, scores, kls;
  for (const pareto_point& p : front) {
    bits.push_back(p.effective_bits);
    scores.push_back(p.score);
  }
  for (const mix_evaluation& m : evaluation.mixes) {
    bits.push_back(m.effective_bits);
    scores.push_back(m.predicted_score);
    kls.push_back(m.mean_kl);
  }
  const auto [min_bits, max_bits] =
      bits.empty() ? std::pair{0.0, 16.0} : std::pair{*std::min_element(bits.begin(), bits.end()),
                                                      *std::max_element(bits.begin(), bits.end())};
  const svg::linear_scale x(min_bits, max_bits, area.left, area.right, 8);
  const svg::symlog_scale y_score(scores, area.bottom, area.top);
  const svg::symlog_scale y_kl(kls, area.bottom, area.top);

  svg::writer svg(width, height, "Predicted score and measured KL over effective bits", "aq-plot pareto-plot");
  svg::draw_heading(svg, width, "Predicted score (left) and measured mean KL (right) vs effective bits");
  svg::draw_axis(svg, area, svg::side::bottom, svg::place_ticks(x), "effective bits");
  svg::draw_axis(svg, area, svg::side::left, svg::place_ticks(y_score), "predicted total score (symlog)",
                 detail::score_colour);
  svg::draw_axis(svg, area, svg::side::right, svg::place_ticks(y_kl), "measured mean KL, nats (symlog)",
                 detail::kl_colour);

  if (model.scheme.auto_quantize_bits > 0.0 && model.scheme.auto_quantize_bits >= x.lo() &&
      model.scheme.auto_quantize_bits <= x.hi()) {
    const double bx = x(model.scheme.auto_quantize_bits);
    svg.element("line", {{"class", "budget-line"}, {"x1", svg::number(bx)}, {"y1", svg::number(area.top)},
                         {"x2", svg::number(bx)}, {"y2", svg::number(area.bottom)}, {"stroke", "#999999"},
                         {"stroke-dasharray", "4 4"}});
    svg.text({{"x", svg::number(bx + 4)}, {"y", svg::number(area.bottom - 6)}, {"fill", "#666666"}}, "budget");
  }

  // The front as a step: below the next point's bits, only the previous point is affordable.
  std::vector<pareto_point> sorted = front;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const pareto_point& a, const pareto_point& b) { return a.effective_bits < b.effective_bits; });
  std::vector<std::pair<double, double>> steps;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const double px = x(sorted[i].effective_bits);
    if (i > 0) steps.push_back({px, steps.back().second});
    steps.push_back({px, y_score(sorted[i].score)});
  }
  svg.begin_group({{"class", "front"}});
  if (steps.size() > 1) {
    svg.element("polyline", {{"class", "front-line"}, {"points", svg::points(steps)}, {"fill", "none"},
                             {"stroke", "#7f7f7f"}, {"stroke-width", "2"}});
  }
  for (const pareto_point& p : sorted) {
    svg.element("circle",
                {{"class", "front-point"}, {"cx", svg::number(x(p.effective_bits))}, {"cy", svg::number(y_score(p.score))},
                 {"r", "2.5"}, {"fill", "#7f7f7f"}},
                "front: " + python_float_repr(p.effective_bits) + " bits, score " + python_float_repr(p.score));
  }
  svg.end_group();

  svg.begin_group({{"class", "mixes"}});
  for (const mix_evaluation& m : evaluation.mixes) {
    const double px = x(m.effective_bits);
    const double ps = y_score(m.predicted_score);
    const double pk = y_kl(m.mean_kl);
    const std::string about = m.name + " (" + std::string(to_string(m.kind)) + "): " +
                              python_float_repr(m.effective_bits) + " bits, predicted score " +
                              python_float_repr(m.predicted_score) + ", mean KL " + python_float_repr(m.mean_kl);
    svg.element("circle", {{"class", "mix-point"}, {"cx", svg::number(px)}, {"cy", svg::number(ps)}, {"r", "5"},
                           {"fill", detail::score_colour}, {"fill-opacity", "0.85"}},
                about);
    svg.element("polygon", {{"class", "mix-kl-point"}, {"points", detail::diamond(px, pk, 6)},
                            {"fill", detail::kl_colour}, {"fill-opacity", "0.85"}},
                about);
    if (m.kind == mix_kind::chosen) {
      for (const double py : {ps, pk}) {
        svg.element("circle", {{"class", "chosen-marker"}, {"cx", svg::number(px)}, {"cy", svg::number(py)}, {"r", "10"},
                               {"fill", "none"}, {"stroke", detail::chosen_colour}, {"stroke-width", "2.5"}});
      }
    }
    if (m.kind == mix_kind::uniform || m.kind == mix_kind::unquantized || m.kind == mix_kind::chosen) {
      svg.text({{"class", "mix-label"}, {"x", svg::number(px + 8)}, {"y", svg::number(ps - 8)}, {"font-size", "11"},
                {"fill", m.kind == mix_kind::chosen ? detail::chosen_colour : "#333333"},
                {"transform", "rotate(-25 " + svg::number(px + 8) + " " + svg::number(ps - 8) + ")"}},
               detail::reference_label(m));
    }
  }
  svg.end_group();
  detail::pareto_legend(svg, area.left, height - 28);
  return svg.finish();
}

}  // namespace aq::io
