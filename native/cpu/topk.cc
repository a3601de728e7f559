#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

void CpuOps::topk_softmax(const Tensor& logits, int k, const Tensor& map, const Tensor& probs, const Tensor& ids) {
  expect_dtype(logits, DType::F32, "topk_softmax logits");
  expect_dtype(probs, DType::F32, "topk_softmax probs");
  expect_dtype(ids, DType::I32, "topk_softmax ids");
  int64_t R = logits.dim(0), V = logits.dim(1);
  E3_ARG(k >= 1 && k <= V, "topk_softmax: k = " + std::to_string(k) + " for rows of " + std::to_string(V));
  expect_shape(probs, {R, k}, "topk_softmax probs");
  expect_shape(ids, {R, k}, "topk_softmax ids");
  if (map.defined()) {
    expect_dtype(map, DType::I32, "topk_softmax map");
    E3_ARG(map.numel() == V, "topk_softmax: map " + map.describe() + " for rows of " + std::to_string(V));
  }
  std::vector<int32_t> order(static_cast<size_t>(V));
  for (int64_t r = 0; r < R; ++r) {
    const float* l = logits.ptr<float>() + r * V;
    float mx = *std::max_element(l, l + V);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i] - mx));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    for (int j = 0; j < k; ++j) {
      int32_t id = order[size_t(j)];
      probs.ptr<float>()[r * k + j] = float(std::exp(double(l[id] - mx)) / sum);
      ids.ptr<int32_t>()[r * k + j] = map.defined() ? map.ptr<int32_t>()[id] : id;
    }
  }
}

}  // namespace e3
