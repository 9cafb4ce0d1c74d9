// Segmentation metrics and PaddleSeg's [EVAL] lines; see seg_metrics.h for the formulas and their
// sources (paddleseg/utils/metrics.py, core/val.py) and numpy's array
// printing rules (numpy/core/arrayprint.py: FloatingFormat, _formatArray). Tested by
// tests/test_seg_metrics.cpp.
#include "train/seg_metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "base/error.h"
#include "train/numpy_sum.h"

namespace engine::train {

SegMetrics compute_seg_metrics(const std::vector<int64_t>& intersect, const std::vector<int64_t>& pred,
                               const std::vector<int64_t>& label) {
  const size_t c = intersect.size();
  ENGINE_CHECK(pred.size() == c && label.size() == c, "compute_seg_metrics: intersect, pred and label areas must have ",
               "one entry per class, got sizes ", c, ", ", pred.size(), ", ", label.size());
  ENGINE_CHECK(c > 0, "compute_seg_metrics: no classes");
  for (size_t i = 0; i < c; ++i)
    ENGINE_CHECK(intersect[i] >= 0 && intersect[i] <= pred[i] && intersect[i] <= label[i],
                 "compute_seg_metrics: class ", i, " has inconsistent areas (intersect ", intersect[i], ", pred ",
                 pred[i], ", label ", label[i], "); expected 0 <= intersect <= min(pred, label)");

  SegMetrics m;
  double sum_i = 0, sum_p = 0, sum_l = 0;  // exact: integers below 2^53
  std::vector<double> pl;                  // P_i * L_i, summed the way numpy sums
  for (size_t i = 0; i < c; ++i) {
    const double in = (double)intersect[i], p = (double)pred[i], l = (double)label[i];
    const double uni = p + l - in;
    m.class_iou.push_back(uni == 0 ? 1.0 : in / uni);
    m.class_precision.push_back(p == 0 ? 0.0 : in / p);
    m.class_recall.push_back(l == 0 ? 0.0 : in / l);
    m.class_dice.push_back(p + l == 0 ? 0.0 : 2 * in / (p + l));
    sum_i += in;
    sum_p += p;
    sum_l += l;
    pl.push_back(p * l);
  }
  auto mean = [](const std::vector<double>& v) { return numpy_pairwise_sum(v.data(), v.size()) / (double)v.size(); };
  m.miou = mean(m.class_iou);
  m.mdice = mean(m.class_dice);
  m.acc = sum_p == 0 ? 0.0 : sum_i / sum_p;
  if (sum_l > 0) {
    const double po = sum_i / sum_l, pe = numpy_pairwise_sum(pl.data(), pl.size()) / (sum_l * sum_l);
    m.kappa = pe == 1 ? 0.0 : (po - pe) / (1 - pe);
  }
  return m;
}

// ------------------------------------------------------------------ numpy-style array printing
namespace {

std::string printf_str(const char* fmt, int prec, double v) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), fmt, prec, v);
  return buf;
}

// Digits after the point in the shortest round-trip scientific form of v ("9.802e-01" -> 3).
int shortest_sci_frac_digits(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  const std::string s(buf, r.ptr);
  const size_t dot = s.find('.'), e = s.find('e');
  return dot == std::string::npos ? 0 : (int)(e - dot - 1);
}

}  // namespace

std::string format_numpy_array(const std::vector<double>& values, int decimals) {
  ENGINE_CHECK(decimals >= 0 && decimals <= 8, "format_numpy_array: decimals must be in [0, 8], got ", decimals);
  constexpr int kPrecision = 8;      // numpy's default print precision
  constexpr size_t kLineWidth = 75;  // numpy's default linewidth
  const double scale = std::pow(10.0, decimals);
  std::vector<double> v;
  for (double x : values) v.push_back(std::nearbyint(x * scale) / scale);  // np.round: rint(x*10^d)/10^d

  // Exponential format is chosen from the finite non-zero magnitudes (FloatingFormat.fillFormat).
  bool exp_format = false, any_finite = false;
  double max_val = 0, min_val = INFINITY;
  for (double x : v) {
    if (!std::isfinite(x)) continue;
    any_finite = true;
    if (x == 0) continue;
    max_val = std::max(max_val, std::fabs(x));
    min_val = std::min(min_val, std::fabs(x));
  }
  if (max_val > 0 && (max_val >= 1e8 || min_val < 1e-4 || max_val / min_val > 1000.)) exp_format = true;

  // First pass: each finite value's text, then the widths of its integer and fraction parts.
  std::vector<std::string> text(v.size());
  size_t pad_left = 0, pad_right = 0;
  if (exp_format) {
    int prec = 0;  // the most significant digits any value needs, all printed with that many
    for (double x : v)
      if (std::isfinite(x)) prec = std::max(prec, std::min(kPrecision, shortest_sci_frac_digits(x)));
    size_t exp_digits = 2;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) continue;
      text[i] = printf_str("%#.*e", prec, v[i]);
      const size_t e = text[i].find('e');
      exp_digits = std::max(exp_digits, text[i].size() - e - 2);
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) continue;
      std::string& t = text[i];  // numpy pads every exponent to the same number of digits
      const size_t e = t.find('e');
      const size_t have = t.size() - e - 2;
      t.insert(e + 2, exp_digits - have, '0');
      pad_left = std::max(pad_left, t.find('.'));
    }
    pad_right = exp_digits + 2 + (size_t)prec;
  } else {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) continue;
      // The rounded values have at most `decimals` fraction digits; print them, drop trailing
      // zeros and keep the point ("0.", "0.5", "0.9802").
      std::string t = printf_str("%.*f", std::min(decimals, kPrecision), v[i]);
      if (t.find('.') == std::string::npos) t += '.';
      while (t.back() == '0') t.pop_back();
      text[i] = t;
      const size_t dot = t.find('.');
      pad_left = std::max(pad_left, dot);
      pad_right = std::max(pad_right, t.size() - dot - 1);
    }
  }
  if (!any_finite) pad_left = pad_right = 0;
  // Non-finite values may widen the integer column (numpy: pad_left >= len("nan") - (pad_right + 1)).
  bool has_nonfinite = false, neg_inf = false;
  for (double x : v) {
    if (std::isfinite(x)) continue;
    has_nonfinite = true;
    neg_inf |= std::isinf(x) && x < 0;
  }
  if (has_nonfinite) {
    const size_t offset = pad_right + 1;
    const size_t inflen = 3 + (neg_inf ? 1 : 0);
    if (3 > offset) pad_left = std::max(pad_left, 3 - offset);
    if (inflen > offset) pad_left = std::max(pad_left, inflen - offset);
  }

  // Second pass: pad every value to the common column width.
  std::vector<std::string> words;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      const std::string s = std::isnan(v[i]) ? "nan" : (v[i] < 0 ? "-inf" : "inf");
      words.push_back(std::string(pad_left + pad_right + 1 - s.size(), ' ') + s);
      continue;
    }
    const std::string& t = text[i];
    const size_t dot = t.find('.');
    std::string w = std::string(pad_left - dot, ' ') + t;
    if (!exp_format) w += std::string(pad_right - (t.size() - dot - 1), ' ');
    words.push_back(w);
  }

  // Line wrapping (_formatArray / _extendLine): a word goes on a new line when the line would
  // exceed linewidth - 1 (room for the closing bracket); continuation lines start with one space.
  const std::string indent = " ";
  const size_t elem_width = kLineWidth - 1;
  std::string s, line = indent;
  for (size_t i = 0; i < words.size(); ++i) {
    const bool needs_wrap = line.size() + words[i].size() > elem_width && line.size() > indent.size();
    if (needs_wrap) {
      while (!line.empty() && line.back() == ' ') line.pop_back();
      s += line + "\n";
      line = indent;
    }
    line += words[i];
    if (i + 1 < words.size()) line += ' ';
  }
  s += line;
  return "[" + s.substr(indent.size()) + "]";
}

std::string format_eval_lines(const SegMetrics& m, int64_t num_images) {
  char head[256];
  std::snprintf(head, sizeof(head), "[EVAL] #Images: %lld mIoU: %.4f Acc: %.4f Kappa: %.4f Dice: %.4f",
                (long long)num_images, m.miou, m.acc, m.kappa, m.mdice);
  return std::string(head) + "\n[EVAL] Class IoU: \n" + format_numpy_array(m.class_iou) +
         "\n[EVAL] Class Precision: \n" + format_numpy_array(m.class_precision) + "\n[EVAL] Class Recall: \n" +
         format_numpy_array(m.class_recall);
}

}  // namespace engine::train
