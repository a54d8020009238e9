#include "common/eval/plot.h"

#include <gd.h>
#include <gdfonts.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace linearize::eval {
namespace {

constexpr int kPalette[][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                               {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};

void Text(gdImagePtr im, int x, int y, const std::string& s, int color) {
  gdImageString(im, gdFontGetSmall(), x, y,
                reinterpret_cast<unsigned char*>(const_cast<char*>(s.c_str())), color);
}

std::string Tick(double v) {
  if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-2)) return absl::StrFormat("%.1e", v);
  return absl::StrFormat("%.6g", std::round(v * 1000) / 1000);
}

}  // namespace

absl::Status WriteLinePlot(const std::string& path, const PlotSpec& spec,
                           const std::vector<PlotSeries>& series) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const PlotSeries& s : series) {
    if (s.x.size() != s.y.size()) {
      return absl::InvalidArgumentError(absl::StrCat("plot series ", s.name, ": x and y differ"));
    }
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (spec.log_x && !(s.x[i] > 0)) {
        return absl::InvalidArgumentError(absl::StrCat("plot series ", s.name, ": x <= 0"));
      }
      const double x = spec.log_x ? std::log2(s.x[i]) : s.x[i];
      if (!std::isfinite(x) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  }
  if (!(x0 <= x1)) return absl::InvalidArgumentError(absl::StrCat(path, ": nothing to plot"));
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  if (!std::isnan(spec.y_min)) y0 = spec.y_min;
  if (!std::isnan(spec.y_max)) y1 = spec.y_max;
  if (!(y0 < y1)) return absl::InvalidArgumentError(absl::StrCat(path, ": empty y range"));

  std::unique_ptr<gdImage, void (*)(gdImagePtr)> im(gdImageCreateTrueColor(spec.width, spec.height),
                                                    gdImageDestroy);
  if (!im) return absl::InternalError("gdImageCreateTrueColor failed");
  gdImagePtr g = im.get();
  const int white = gdImageColorAllocate(g, 255, 255, 255);
  const int black = gdImageColorAllocate(g, 0, 0, 0);
  const int grey = gdImageColorAllocate(g, 220, 220, 220);
  gdImageFilledRectangle(g, 0, 0, spec.width - 1, spec.height - 1, white);
  const int left = 70, right = spec.width - 170, top = 30, bottom = spec.height - 50;
  auto px = [&](double x) { return left + static_cast<int>((x - x0) / (x1 - x0) * (right - left)); };
  auto py = [&](double y) { return bottom - static_cast<int>((y - y0) / (y1 - y0) * (bottom - top)); };

  // x ticks: powers of two on a log axis (when few enough), else 6 even steps.
  std::vector<double> xticks;
  if (spec.log_x && x1 - x0 <= 12) {
    for (double e = std::ceil(x0); e <= x1; e += 1) xticks.push_back(e);
  } else {
    for (int i = 0; i <= 5; ++i) xticks.push_back(x0 + (x1 - x0) * i / 5);
  }
  for (double xv : xticks) {
    gdImageLine(g, px(xv), top, px(xv), bottom, grey);
    const std::string xs = Tick(spec.log_x ? std::exp2(xv) : xv);
    Text(g, px(xv) - 3 * static_cast<int>(xs.size()), bottom + 4, xs, black);
  }
  for (int i = 0; i <= 5; ++i) {  // y grid and ticks
    const double yv = y0 + (y1 - y0) * i / 5;
    gdImageLine(g, left, py(yv), right, py(yv), grey);
    const std::string ys = Tick(yv);
    Text(g, left - 6 - 6 * static_cast<int>(ys.size()), py(yv) - 6, ys, black);
  }
  gdImageRectangle(g, left, top, right, bottom, black);
  Text(g, left, 10, spec.title, black);
  Text(g, (left + right) / 2 - 3 * static_cast<int>(spec.x_label.size()), bottom + 22,
       spec.x_label + (spec.log_x ? " (log2 scale)" : ""), black);
  gdImageStringUp(g, gdFontGetSmall(), 4, (top + bottom) / 2 + 3 * static_cast<int>(spec.y_label.size()),
                  reinterpret_cast<unsigned char*>(const_cast<char*>(spec.y_label.c_str())), black);

  gdImageSetThickness(g, 2);
  for (size_t k = 0; k < series.size(); ++k) {
    const int* rgb = kPalette[k % std::size(kPalette)];
    const int color = gdImageColorAllocate(g, rgb[0], rgb[1], rgb[2]);
    const PlotSeries& s = series[k];
    int prev_x = -1, prev_y = -1;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      const int cx = px(spec.log_x ? std::log2(s.x[i]) : s.x[i]), cy = py(s.y[i]);
      if (prev_x >= 0) gdImageLine(g, prev_x, prev_y, cx, cy, color);
      gdImageFilledRectangle(g, cx - 2, cy - 2, cx + 2, cy + 2, color);
      prev_x = cx, prev_y = cy;
    }
    const int ly = top + 10 + 16 * static_cast<int>(k);
    gdImageLine(g, right + 10, ly + 6, right + 30, ly + 6, color);
    Text(g, right + 35, ly, s.name, black);
  }

  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat(path, ": cannot open for writing"));
  gdImagePng(g, f);
  if (std::fclose(f) != 0) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace linearize::eval
