// A minimal parallel-for over [0, n) for the CPU reference path: contiguous chunks, one per worker.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace e3 {

template <class F>
void parallel_for(int64_t n, int64_t min_chunk, F&& body) {
  int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  int64_t workers = std::min<int64_t>(hw, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
  if (workers <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  int64_t chunk = (n + workers - 1) / workers;
  for (int64_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      try {
        for (int64_t i = w * chunk, end = std::min(n, (w + 1) * chunk); i < end; ++i) body(i);
      } catch (...) {
        errors[size_t(w)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace e3
