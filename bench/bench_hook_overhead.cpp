// The cost of a hook point with nothing attached: the forward calls it at every activation, so
// this times that call and relates it to the number of points a Whisper forward passes.
#include <ATen/ATen.h>

#include <chrono>
#include <iostream>

#include "speechlens/hooks/hook_registry.h"

int main() {
  speechlens::hooks::HookRegistry registry;
  auto& point = registry.create("encoder.blocks.0.hook_resid_post");
  auto x = at::ones({1, 4});
  constexpr int kCalls = 50'000'000;
  at::Tensor sink;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) sink = point(x);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double ns = seconds * 1e9 / kCalls;
  // whisper-base passes ~220 hook points per forward (decoder points once per forward).
  std::cout << "unused hook point: " << ns << " ns per call; 220 points = " << 220 * ns / 1e3
            << " us per forward\n";
  return sink.defined() ? 0 : 1;
}
