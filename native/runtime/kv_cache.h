// The paged KV cache pool of one model: per layer, K and V of num_pages · page_size slots, each
// [kv_heads, head_dim]. Pages are handed out by the TypeScript batch layer; native code only
// reads page tables.
#pragma once
#include <vector>

#include "runtime/tensor.h"

namespace e3 {

struct KvCache {
  int num_pages = 0, page_size = 0;
  std::vector<Tensor> k, v;  // per layer: [num_pages · page_size, kv_heads, head_dim]
  Tensor pool;               // [2 · layers, num_pages · page_size, kv_heads, head_dim]: k, v of layer l at 2l, 2l + 1

  static KvCache allocate(Device device, DType dtype, int layers, int num_pages, int page_size, int kv_heads,
                          int head_dim);
  size_t bytes() const;
};

}  // namespace e3
