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

// The plot area and its three scales, fitted to every point drawn.
struct pareto_frame {
  svg::plot_area area;
  svg::linear_scale x;
  svg::symlog_scale y_score;  // left axis
  svg::symlog_scale y_kl;     // right axis
};

inline pareto_frame make_pareto_frame(const std::vector<pareto_point>& front, const evaluation_report& evaluation) {
  const svg::plot_area area{90, 50, 800, 440};
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
  const bool any = !bits.empty();
  const double lo = any ? *std::min_element(bits.begin(), bits.end()) : 0.0;
  const double hi = any ? *std::max_element(bits.begin(), bits.end()) : 16.0;
  return {area, svg::linear_scale(lo, hi, area.left, area.right, 8), svg::symlog_scale(scores, area.bottom, area.top),
          svg::symlog_scale(kls, area.bottom, area.top)};
}

inline void draw_budget(svg::writer& svg, const pareto_frame& f, double budget) {
  if (!(budget > 0.0) || budget < f.x.lo() || budget > f.x.hi()) return;
  const double bx = f.x(budget);
  svg.element("line", {{"class", "budget-line"}, {"x1", svg::number(bx)}, {"y1", svg::number(f.area.top)},
                       {"x2", svg::number(bx)}, {"y2", svg::number(f.area.bottom)}, {"stroke", "#999999"},
                       {"stroke-dasharray", "4 4"}});
  svg.text({{"x", svg::number(bx + 4)}, {"y", svg::number(f.area.bottom - 6)}, {"fill", "#666666"}}, "budget");
}

// The front as a step line: below the next point's bits, only the previous point is affordable.
inline void draw_front(svg::writer& svg, const pareto_frame& f, std::vector<pareto_point> front) {
  std::stable_sort(front.begin(), front.end(),
                   [](const pareto_point& a, const pareto_point& b) { return a.effective_bits < b.effective_bits; });
  std::vector<std::pair<double, double>> steps;
  for (const pareto_point& p : front) {
    if (!steps.empty()) steps.push_back({f.x(p.effective_bits), steps.back().second});
    steps.push_back({f.x(p.effective_bits), f.y_score(p.score)});
  }
  svg.begin_group({{"class", "front"}});
  if (steps.size() > 1) {
    svg.element("polyline", {{"class", "front-line"}, {"points", svg::points(steps)}, {"fill", "none"},
                             {"stroke", "#7f7f7f"}, {"stroke-width", "2"}});
  }
  for (const pareto_point& p : front) {
    svg.element("circle",
                {{"class", "front-point"}, {"cx", svg::number(f.x(p.effective_bits))},
                 {"cy", svg::number(f.y_score(p.score))}, {"r", "2.5"}, {"fill", "#7f7f7f"}},
                "front: " + python_float_repr(p.effective_bits) + " bits, score " + python_float_repr(p.score));
  }
  svg.end_group();
}

// One mix: its predicted score (circle, left axis) and measured KL (diamond, right axis), a ring
// on both when it is the chosen mix, and a label when it is a reference point.
inline void draw_mix(svg::writer& svg, const pareto_frame& f, const mix_evaluation& m) {
  const double px = f.x(m.effective_bits);
  const double ps = f.y_score(m.predicted_score);
  const double pk = f.y_kl(m.mean_kl);
  const std::string about = m.name + " (" + std::string(to_string(m.kind)) + "): " +
                            python_float_repr(m.effective_bits) + " bits, predicted score " +
                            python_float_repr(m.predicted_score) + ", mean KL " + python_float_repr(m.mean_kl);
  svg.element("circle", {{"class", "mix-point"}, {"cx", svg::number(px)}, {"cy", svg::number(ps)}, {"r", "5"},
                         {"fill", score_colour}, {"fill-opacity", "0.85"}},
              about);
  svg.element("polygon",
              {{"class", "mix-kl-point"}, {"points", diamond(px, pk, 6)}, {"fill", kl_colour}, {"fill-opacity", "0.85"}},
              about);
  if (m.kind == mix_kind::chosen) {
    for (const double py : {ps, pk}) {
      svg.element("circle", {{"class", "chosen-marker"}, {"cx", svg::number(px)}, {"cy", svg::number(py)}, {"r", "10"},
                             {"fill", "none"}, {"stroke", chosen_colour}, {"stroke-width", "2.5"}});
    }
  }
  if (m.kind == mix_kind::pareto) return;  // the front already shows where these lie
  svg.text({{"class", "mix-label"}, {"x", svg::number(px + 8)}, {"y", svg::number(ps - 8)}, {"font-size", "11"},
            {"fill", m.kind == mix_kind::chosen ? chosen_colour : "#333333"},
            {"transform", "rotate(-25 " + svg::number(px + 8) + " " + svg::number(ps - 8) + ")"}},
           reference_label(m));
}

}  // namespace detail

inline std::string render_pareto_svg(const report_model& model, const evaluation_report& evaluation) {
  constexpr double width = 900, height = 540;
  const std::vector<pareto_point> front = model.pareto_front.value_or(std::vector<pareto_point>{});
  const detail::pareto_frame f = detail::make_pareto_frame(front, evaluation);

  svg::writer svg(width, height, "Predicted score and measured KL over effective bits", "aq-plot pareto-plot");
  svg::draw_heading(svg, width, "Predicted score (left) and measured mean KL (right) vs effective bits");
  svg::draw_axis(svg, f.area, svg::side::bottom, svg::place_ticks(f.x), "effective bits");
  svg::draw_axis(svg, f.area, svg::side::left, svg::place_ticks(f.y_score), "predicted total score (symlog)",
                 detail::score_colour);
  svg::draw_axis(svg, f.area, svg::side::right, svg::place_ticks(f.y_kl), "measured mean KL, nats (symlog)",
                 detail::kl_colour);
  detail::draw_budget(svg, f, model.scheme.auto_quantize_bits);
  detail::draw_front(svg, f, front);
  svg.begin_group({{"class", "mixes"}});
  for (const mix_evaluation& m : evaluation.mixes) detail::draw_mix(svg, f, m);
  svg.end_group();
  detail::pareto_legend(svg, f.area.left, height - 28);
  return svg.finish();
}

}  // namespace aq::io
