// Line plots as PNG (libgd, its built-in bitmap fonts: works headless with
// no font files): axes with ticks, a title, axis labels and a legend.
#pragma once

#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace linearize::eval {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // same length; points are joined in order
};

struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_x = false;  // log2 x axis (context lengths); x must be > 0
  int width = 800, height = 500;
  // A fixed y range (accuracies: 0 and 1); NaN: from the data.
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
};

// INVALID_ARGUMENT for no points, mismatched x/y or x <= 0 with log_x;
// INTERNAL when the file cannot be written.
absl::Status WriteLinePlot(const std::string& path, const PlotSpec& spec,
                           const std::vector<PlotSeries>& series);

}  // namespace linearize::eval
