#include "runtime/sampling_filter.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace e3 {

const float* filtered_probs(const float* logits, int64_t V, const SamplingParams& sp, std::vector<float>& probs) {
  float mx = *std::max_element(logits, logits + V);
  std::vector<double> z(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) z[size_t(i)] = std::exp(double(logits[i] - mx) / sp.temperature);
  probs.assign(static_cast<size_t>(V), 0.0f);
  if (sp.top_k <= 0 && sp.top_p >= 1.0f) {  // plain temperature: no ranking needed
    double sum = 0;
    for (double v : z) sum += v;
    for (int64_t i = 0; i < V; ++i) probs[size_t(i)] = float(z[size_t(i)] / sum);
    return probs.data();
  }
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = size_t(V);
  if (sp.top_k > 0 && size_t(sp.top_k) < keep) {
    keep = size_t(sp.top_k);
    while (keep < size_t(V) && logits[order[keep]] == logits[order[keep - 1]]) ++keep;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += z[size_t(order[i])];
  if (sp.top_p < 1.0f) {
    double mass = 0;
    size_t n = 0;
    while (n < keep && mass < double(sp.top_p) * total) mass += z[size_t(order[n++])];
    keep = std::max<size_t>(1, n);
    total = mass > 0 ? mass : z[size_t(order[0])];
  }
  for (size_t i = 0; i < keep; ++i) probs[size_t(order[i])] = float(z[size_t(order[i])] / total);
  return probs.data();
}

}  // namespace e3
