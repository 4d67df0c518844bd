// Axes of the evaluation plots: an axis line, tick marks with labels and a title, on any side of
// the plot area. The scale (report/svg/svg_scale.hpp) picks the ticks; this draws them.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "aq/report/svg/svg_scale.hpp"
#include "aq/report/svg/svg_writer.hpp"

namespace aq::io::svg {

// A tick at its pixel position along the axis.
struct placed_tick {
  double pixel = 0.0;
  std::string label;
};

template <class Scale>
std::vector<placed_tick> place_ticks(const Scale& scale) {
  std::vector<placed_tick> out;
  for (const tick& t : scale.ticks()) out.push_back({scale(t.value), t.label});
  return out;
}

enum class side { left, right, bottom };

// The pixel box the data is drawn in.
struct plot_area {
  double left = 0.0, top = 0.0, right = 0.0, bottom = 0.0;
  double width() const { return right - left; }
  double height() const { return bottom - top; }
};

// One axis along an edge of `area`, with light grid lines across it for the left and bottom axes.
inline void draw_axis(writer& svg, const plot_area& area, side where, const std::vector<placed_tick>& ticks,
                      std::string_view title, std::string_view colour = "#333333") {
  const std::string c(colour);
  const bool vertical = where != side::bottom;
  const double x = where == side::right ? area.right : area.left;
  const double outward = where == side::left ? -1.0 : 1.0;  // ticks point away from the data
  svg.begin_group({{"class", "axis"}});
  if (vertical) {
    svg.element("line", {{"x1", number(x)}, {"y1", number(area.top)}, {"x2", number(x)}, {"y2", number(area.bottom)},
                         {"stroke", c}});
  } else {
    svg.element("line", {{"x1", number(area.left)}, {"y1", number(area.bottom)}, {"x2", number(area.right)},
                         {"y2", number(area.bottom)}, {"stroke", c}});
  }
  for (const placed_tick& t : ticks) {
    if (vertical) {
      if (where == side::left) {
        svg.element("line", {{"class", "grid"}, {"x1", number(area.left)}, {"y1", number(t.pixel)},
                             {"x2", number(area.right)}, {"y2", number(t.pixel)}, {"stroke", "#e6e6e6"}});
      }
      svg.element("line", {{"x1", number(x)}, {"y1", number(t.pixel)}, {"x2", number(x + 5.0 * outward)},
                           {"y2", number(t.pixel)}, {"stroke", c}});
      svg.text({{"x", number(x + 8.0 * outward)}, {"y", number(t.pixel + 4.0)},
                {"text-anchor", where == side::left ? "end" : "start"}, {"fill", c}},
               t.label);
    } else {
      svg.element("line", {{"class", "grid"}, {"x1", number(t.pixel)}, {"y1", number(area.top)}, {"x2", number(t.pixel)},
                           {"y2", number(area.bottom)}, {"stroke", "#e6e6e6"}});
      svg.element("line", {{"x1", number(t.pixel)}, {"y1", number(area.bottom)}, {"x2", number(t.pixel)},
                           {"y2", number(area.bottom + 5.0)}, {"stroke", c}});
      svg.text({{"x", number(t.pixel)}, {"y", number(area.bottom + 18.0)}, {"text-anchor", "middle"}, {"fill", c}},
               t.label);
    }
  }
  if (vertical) {
    const double tx = x + 52.0 * outward;
    const double ty = (area.top + area.bottom) / 2.0;
    svg.text({{"class", "axis-title"}, {"x", number(tx)}, {"y", number(ty)}, {"text-anchor", "middle"},
              {"font-size", "13"}, {"fill", c},
              {"transform", "rotate(" + std::string(where == side::left ? "-90 " : "90 ") + number(tx) + " " +
                                number(ty) + ")"}},
             title);
  } else {
    svg.text({{"class", "axis-title"}, {"x", number((area.left + area.right) / 2.0)}, {"y", number(area.bottom + 38.0)},
              {"text-anchor", "middle"}, {"font-size", "13"}, {"fill", c}},
             title);
  }
  svg.end_group();
}

// Every how many of `count` categories, `spacing` pixels apart, gets a label, so that labels
// `min_gap` pixels apart never overlap (the layer axis holds up to several hundred groups).
inline std::size_t label_stride(double spacing, double min_gap = 14.0) {
  if (!(spacing > 0.0)) return 1;
  const double stride = std::ceil(min_gap / spacing);
  return stride < 1.0 ? 1 : static_cast<std::size_t>(stride);
}

// Category labels under a plot, written downwards from `y` at their centres `x[i]`, one in
// every `stride`, with the axis title under them.
inline void draw_category_labels(writer& svg, const std::vector<double>& x, const std::vector<std::string>& labels,
                                 double y, std::size_t stride, std::string_view title, double title_y) {
  svg.begin_group({{"class", "category-labels"}, {"font-size", "10"}});
  for (std::size_t i = 0; i < labels.size() && i < x.size(); i += stride) {
    svg.text({{"x", number(x[i] + 3.0)}, {"y", number(y)}, {"text-anchor", "end"},
              {"transform", "rotate(-90 " + number(x[i] + 3.0) + " " + number(y) + ")"}},
             labels[i]);
  }
  svg.end_group();
  const double mid = x.empty() ? 0.0 : (x.front() + x.back()) / 2.0;
  svg.text({{"class", "axis-title"}, {"x", number(mid)}, {"y", number(title_y)}, {"text-anchor", "middle"},
            {"font-size", "13"}},
           title);
}

// The plot's heading, centred above the area.
inline void draw_heading(writer& svg, double width, std::string_view heading) {
  svg.text({{"class", "heading"}, {"x", number(width / 2.0)}, {"y", "22"}, {"text-anchor", "middle"},
            {"font-size", "15"}, {"font-weight", "bold"}},
           heading);
}

}  // namespace aq::io::svg
