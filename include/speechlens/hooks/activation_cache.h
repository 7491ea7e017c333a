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
  // Drop padded positions: along each time axis, positions beyond the longest valid length in
  // the batch are cut (with batch 1 exactly the padding). Shorter items keep their padding up
  // to that length: their valid lengths (lengths(name)) say where it starts. Off by default so
  // cached activations keep the shape of the forward they came from (and can be patched back).
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

  // What the forward knew about the padding of `name`'s activation (its last firing): the
  // valid lengths [B] of its main time axis (undefined when every position is real or unknown),
  // its valid-position mask [B, T] along that axis, and its time axes (dim, unit).
  at::Tensor lengths(const std::string& name) const;
  at::Tensor mask(const std::string& name) const;
  std::vector<TimeAxis> time_axes(const std::string& name) const;

 private:
  struct Extent {
    std::vector<TimeAxis> axes;
    at::Tensor lengths;
    at::Tensor mask;
  };
  CacheOptions options_;
  std::map<std::string, Extent> extents_;
  std::map<std::string, std::vector<at::Tensor>> entries_;
  std::vector<std::string> order_;
  int64_t bytes_ = 0;
};

}  // namespace speechlens::hooks
