#pragma once
// ActivationCache: hook name -> activations recorded during a forward (one tensor per firing;
// a point fires once per forward, once per step while decoding).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "speechlens/hooks/hook_registry.h"

namespace speechlens::hooks {

struct CacheOptions {
  bool detach = true;                       // store without autograd history
  std::optional<at::Device> device;         // e.g. move to CPU while the model runs on GPU
  std::optional<at::ScalarType> dtype;      // e.g. store float16 to halve memory
  bool remove_batch_dim = false;            // store [T, ...] for a batch of one
  // Drop padded positions: positions beyond the longest valid length in the batch are cut, and
  // with batch 1 exactly the padding is cut. Off by default so cached activations keep the
  // shape of the forward they came from (and can be patched back into it).
  bool trim_padding = false;
  // Fail clearly instead of exhausting memory: the cache never holds more than this.
  std::optional<int64_t> max_bytes;
};

class ActivationCache {
 public:
  explicit ActivationCache(CacheOptions options = {}) : options_(std::move(options)) {}

  // The hook that records into this cache. The cache must outlive the forward it records.
  HookFn recorder();

  // The activation of `name`; a name that fired several times (decoding) must be read with
  // steps(name).
  const at::Tensor& get(const std::string& name) const;
  const at::Tensor& operator[](const std::string& name) const { return get(name); }
  const std::vector<at::Tensor>& steps(const std::string& name) const;
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  std::vector<std::string> names() const;  // in recording order
  size_t size() const { return entries_.size(); }
  int64_t bytes() const { return bytes_; }
  void clear();

  // Records one activation (what recorder() does; public for backward hooks and tests).
  void record(const std::string& name, const at::Tensor& activation, const HookContext* ctx);
  const CacheOptions& options() const { return options_; }

 private:
  CacheOptions options_;
  std::map<std::string, std::vector<at::Tensor>> entries_;
  std::vector<std::string> order_;
  int64_t bytes_ = 0;
};

}  // namespace speechlens::hooks
