#include "runtime/kv_cache.h"

#include "runtime/error.h"

namespace e3 {

KvCache KvCache::allocate(Device device, DType dtype, int layers, int num_pages, int page_size, int kv_heads,
                          int head_dim) {
  E3_ARG(num_pages > 0 && page_size > 0, "the KV cache needs at least one page of at least one slot");
  KvCache kv;
  kv.num_pages = num_pages;
  kv.page_size = page_size;
  // One allocation for the whole pool keeps it contiguous and lets OOM fail before anything is used.
  int64_t per = int64_t(num_pages) * page_size * kv_heads * head_dim;
  Tensor pool = Tensor::empty(device, dtype, {2 * int64_t(layers), per});
  kv.pool = pool.view({2 * int64_t(layers), int64_t(num_pages) * page_size, kv_heads, head_dim});
  for (int l = 0; l < layers; ++l) {
    Shape s{int64_t(num_pages) * page_size, kv_heads, head_dim};
    kv.k.push_back(pool.rows(2 * l, 2 * l + 1).view(s));
    kv.v.push_back(pool.rows(2 * l + 1, 2 * l + 2).view(s));
  }
  return kv;
}

size_t KvCache::bytes() const {
  size_t b = 0;
  for (auto& t : k) b += t.nbytes();
  for (auto& t : v) b += t.nbytes();
  return b;
}

}  // namespace e3
