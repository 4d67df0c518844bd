// The one check every evaluation writer runs first: the report model and the evaluation report
// are each valid, agree on the number of groups, and hold only finite numbers where the files
// print them (a strict JSON reader refuses Infinity, and a plot cannot place it).
#pragma once

#include <cmath>
#include <string>

#include "aq/core/error.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/report_model.hpp"

namespace aq::io {

inline void validate_evaluation_inputs(const report_model& model, const evaluation_report& evaluation) {
  validate_report_model(model);
  validate_evaluation_report(evaluation, model.groups.size());
  const std::string where = "evaluation report '" + model.scheme.name + "'";
  if (!std::isfinite(model.scheme.auto_quantize_bits) || !std::isfinite(model.autoquant_state.effective_bits)) {
    throw error(where + ": the budget or the effective bits reached is not finite");
  }
  for (const group_sensitivity& group : model.groups) {
    for (const candidate_stat& c : group.candidates) {
      if (!std::isfinite(c.score) || !std::isfinite(c.cost) || (c.effective_bits && !std::isfinite(*c.effective_bits))) {
        throw error(where + ": group '" + group.name + "' has a non-finite number for " + c.format);
      }
    }
  }
  if (model.pareto_front) {
    for (const pareto_point& p : *model.pareto_front) {
      if (!std::isfinite(p.effective_bits) || !std::isfinite(p.score)) {
        throw error(where + ": pareto_front holds a non-finite point");
      }
    }
  }
}

}  // namespace aq::io
