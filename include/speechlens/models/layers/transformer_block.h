#pragma once
// One transformer block, in the two arrangements the supported models use:
//   pre-norm  (Whisper, Qwen2, wav2vec2 "stable layer norm"):
//       x + attn(ln1(x)) [+ cross_attn(ln_cross(.))] + mlp(ln2(.))
//   post-norm (HuBERT / wav2vec2 base):
//       ln1(x + attn(x)), then ln2(h + mlp(h))
// Hook names are the same either way (DESIGN.md): resid_pre/mid/post, attn_out, mlp_out, ...
#include <memory>

#include "speechlens/models/layers/attention.h"
#include "speechlens/models/layers/mlp.h"
#include "speechlens/models/layers/norm.h"

namespace speechlens::models {

struct BlockConfig {
  AttentionConfig attention;
  MlpConfig mlp;
  NormKind norm = NormKind::layer_norm;
  double norm_eps = 1e-5;
  bool pre_norm = true;
  bool cross_attention = false;
  // Checkpoint names relative to the block's scope.
  std::string self_attn_name = "self_attn";
  std::string ln1_name = "self_attn_layer_norm";
  std::string cross_attn_name = "encoder_attn";
  std::string ln_cross_name = "encoder_attn_layer_norm";
  std::string ln2_name = "final_layer_norm";
  std::string mlp_name = "";  // MLP weights directly in the block scope unless set
};

struct BlockCache {
  KVCache self;
  KVCache cross;
};

class TransformerBlock {
 public:
  TransformerBlock(const WeightScope& weights, const HookNamer& hooks, const BlockConfig& config,
                   const RotaryEmbedding* rotary = nullptr);

  struct Inputs {
    AttentionMask self_mask;
    const at::Tensor* cross_source = nullptr;  // [B, Tk, D] encoder output
    AttentionMask cross_mask;
    BlockCache* cache = nullptr;
    at::Tensor positions;  // rotary positions
  };
  at::Tensor operator()(const at::Tensor& x, const Inputs& inputs) const;
  void visit(const TensorVisitor& fn);

  const BlockConfig& config() const { return config_; }
  const Attention& attention() const { return attn_; }
  const Attention* cross_attention() const { return cross_attn_.get(); }
  const Mlp& mlp() const { return mlp_; }
  const Norm& ln1() const { return ln1_; }
  const Norm& ln2() const { return ln2_; }

  // Whether the current call has reached its stop point (the block returns early then).
  bool stop_requested() const;

  // Members are declared in forward order so hook points are created (and listed) in the
  // order a forward visits them.
 private:
  BlockConfig config_;

 public:
  hooks::HookPoint& hook_resid_pre;

 private:
  Norm ln1_;
  Attention attn_;

 public:
  hooks::HookPoint& hook_attn_out;
  hooks::HookPoint& hook_resid_mid;

 private:
  std::unique_ptr<Norm> ln_cross_;
  std::unique_ptr<Attention> cross_attn_;

 public:
  hooks::HookPoint* hook_cross_attn_out;
  hooks::HookPoint* hook_resid_cross;

 private:
  Norm ln2_;
  Mlp mlp_;

 public:
  hooks::HookPoint& hook_mlp_out;
  hooks::HookPoint& hook_resid_post;
};

using Blocks = std::vector<std::unique_ptr<TransformerBlock>>;

// Where a stack's forward begins in the current call: at block 0 with the stack's own input, or
// where the call's start_at resumes it (its prefix, embeddings included, is then skipped).
struct StackStart {
  int64_t first_block = 0;
  at::Tensor residual;  // defined when resumed: the residual entering block `first_block`
  bool resumed() const { return residual.defined(); }
};
// `batch`: rows the call runs (the resumed activation must have as many); `device`/`dtype`: the
// model's.
StackStart stack_start(const hooks::HookRegistry& registry, hooks::Stack stack, const Blocks& blocks, int64_t batch,
                       const at::Device& device, at::ScalarType dtype);

// Runs blocks [first, end) on x, one cache entry per block when `cache` is given; returns early
// (with the residual so far) once the call has reached its stop point.
at::Tensor run_blocks(const Blocks& blocks, at::Tensor x, int64_t first, TransformerBlock::Inputs inputs,
                      std::vector<BlockCache>* cache = nullptr);

// Whether the current call of `registry` has stopped.
bool call_stopped(const hooks::HookRegistry& registry);

}  // namespace speechlens::models
