#include "speechlens/models/qwen2.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config_json.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

using detail::config_ids;
using detail::config_value;

Qwen2Config Qwen2Config::from_json(const nlohmann::json& j) {
  Qwen2Config c;
  c.vocab_size = config_value<int64_t>(j, "vocab_size", c.vocab_size);
  c.hidden_size = config_value<int64_t>(j, "hidden_size", c.hidden_size);
  c.intermediate_size = config_value<int64_t>(j, "intermediate_size", c.intermediate_size);
  c.layers = config_value<int64_t>(j, "num_hidden_layers", c.layers);
  c.heads = config_value<int64_t>(j, "num_attention_heads", c.heads);
  c.kv_heads = config_value<int64_t>(j, "num_key_value_heads", c.heads);
  c.rms_norm_eps = config_value<double>(j, "rms_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = config_value<int64_t>(j, "max_position_embeddings", c.max_position_embeddings);
  c.activation = config_value<std::string>(j, "hidden_act", c.activation);
  c.tie_word_embeddings = config_value<bool>(j, "tie_word_embeddings", c.tie_word_embeddings);
  c.eos_token_ids = config_ids(j, "eos_token_id");
  if (auto pad = config_ids(j, "pad_token_id"); !pad.empty()) c.pad_token_id = pad[0];

  for (auto [name, value] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                             {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.layers},
                             {"num_attention_heads", c.heads}, {"num_key_value_heads", c.kv_heads}}) {
    if (value <= 0) throw InvalidInput(fmt::format("config.json: '{}' must be positive, got {}", name, value));
  }
  c.head_dim = config_value<int64_t>(j, "head_dim", c.hidden_size / c.heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    throw InvalidInput(fmt::format("config.json: the head dimension must be a positive even number (RoPE "
                                   "rotates pairs), got {}",
                                   c.head_dim));
  }
  if (c.heads % c.kv_heads != 0) {
    throw InvalidInput(fmt::format("config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                                   c.heads, c.kv_heads));
  }

  // transformers 5 keeps RoPE settings in rope_parameters; 4.x in rope_theta / rope_scaling.
  c.rope_theta = config_value<double>(j, "rope_theta", c.rope_theta);
  std::string rope_type = "default";
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) throw InvalidInput(fmt::format("config.json: '{}' must be an object", key));
    c.rope_theta = config_value<double>(*it, "rope_theta", c.rope_theta);
    rope_type = config_value<std::string>(*it, "rope_type", config_value<std::string>(*it, "type", rope_type));
  }
  if (rope_type != "default") {
    throw InvalidInput(fmt::format("config.json: rope_type '{}' is not supported (only 'default' RoPE, as "
                                   "Qwen2 and Qwen2-Audio use)",
                                   rope_type));
  }
  if (config_value<bool>(j, "use_sliding_window", false)) {
    throw InvalidInput("config.json: use_sliding_window is true; sliding-window attention is not supported "
                       "(Qwen2-Audio does not use it)");
  }
  return c;
}

BlockConfig Qwen2Config::block() const {
  BlockConfig block;
  auto& attention = block.attention;
  attention.d_model = hidden_size;
  attention.n_heads = heads;
  attention.n_kv_heads = kv_heads;
  attention.d_head = head_dim;
  attention.q_bias = attention.k_bias = attention.v_bias = true;
  attention.o_bias = false;
  attention.softmax_in_float32 = true;
  attention.o_name = "o_proj";
  auto& mlp = block.mlp;
  mlp.d_model = hidden_size;
  mlp.d_mlp = intermediate_size;
  mlp.activation = activation_from_name(activation);
  mlp.bias = false;
  mlp.gated = true;
  mlp.in_name = "up_proj";
  mlp.gate_name = "gate_proj";
  mlp.out_name = "down_proj";
  block.norm = NormKind::rms_norm;
  block.norm_eps = rms_norm_eps;
  block.pre_norm = true;
  block.self_attn_name = "self_attn";
  block.ln1_name = "input_layernorm";
  block.ln2_name = "post_attention_layernorm";
  block.mlp_name = "mlp";
  return block;
}

Qwen2LanguageModel::Qwen2LanguageModel(const WeightScope& model, const WeightScope& lm_head,
                                       const HookNamer& hooks, const Qwen2Config& config)
    : config_(config) {
  const auto& c = config_;
  rotary_ = std::make_unique<RotaryEmbedding>(c.head_dim, c.rope_theta);
  token_embedding_ = model.take("embed_tokens.weight", {c.vocab_size, c.hidden_size});
  hook_embed_ = &hooks.point("hook_embed");
  const BlockConfig block = c.block();
  for (int64_t i = 0; i < c.layers; ++i) {
    blocks_.push_back(std::make_unique<TransformerBlock>(model.child("layers." + std::to_string(i)),
                                                         hooks.layer("blocks", i), block, rotary_.get()));
  }
  ln_final_ = std::make_unique<Norm>(model.child("norm"), hooks.child("ln_final"), NormKind::rms_norm, c.hidden_size,
                                     c.rms_norm_eps);
  // A tied head is usually left out of the file; when it is there, it is what HF loads.
  if (c.tie_word_embeddings) {
    if (auto head = lm_head.take_optional("weight", {c.vocab_size, c.hidden_size})) {
      unembedding_ = *head;
    } else {
      unembedding_ = token_embedding_;
      tied_unembedding_ = true;
    }
  } else {
    unembedding_ = lm_head.take("weight", {c.vocab_size, c.hidden_size});
  }
}

at::Tensor Qwen2LanguageModel::embed_tokens(const at::Tensor& ids) const {
  if (ids.dim() != 2) {
    throw InvalidInput(fmt::format("token ids must be [batch, seq], got {}", c10::str(ids.sizes())));
  }
  auto long_ids = ids.to(token_embedding_.device(), at::kLong);
  if (long_ids.numel() > 0 &&
      (long_ids.min().item<int64_t>() < 0 || long_ids.max().item<int64_t>() >= config_.vocab_size)) {
    throw InvalidInput(fmt::format("token ids must lie in [0, {}) (the model's vocab_size); got ids from {} to {}",
                                   config_.vocab_size, long_ids.min().item<int64_t>(),
                                   long_ids.max().item<int64_t>()));
  }
  return at::embedding(token_embedding_, long_ids);
}

at::Tensor Qwen2LanguageModel::operator()(const at::Tensor& embeddings, const at::Tensor& positions,
                                          const at::Tensor& key_valid, std::vector<BlockCache>* cache,
                                          int64_t batch) const {
  const hooks::HookRegistry& registry = *hook_embed_->info().registry;
  if (batch < 0) batch = embeddings.defined() ? embeddings.size(0) : 0;
  StackStart start = stack_start(registry, hooks::Stack::lm, blocks_, batch, token_embedding_.device(),
                                 token_embedding_.scalar_type());
  at::Tensor x;
  if (start.resumed()) {
    x = start.residual;
  } else {
    if (!embeddings.defined() || embeddings.dim() != 3 || embeddings.size(2) != config_.hidden_size) {
      throw InvalidInput(fmt::format("language-model embeddings must be [batch, seq, {}], got {}",
                                     config_.hidden_size,
                                     embeddings.defined() ? c10::str(embeddings.sizes()) : std::string("nothing")));
    }
    x = embeddings;
  }
  if (cache && cache->empty()) cache->resize(blocks_.size());
  const int64_t cached = (cache && !cache->empty()) ? (*cache)[0].self.length() : 0;
  if (key_valid.defined() && (key_valid.dim() != 2 || key_valid.size(0) != x.size(0) ||
                              key_valid.size(1) != cached + x.size(1))) {
    throw InvalidInput(fmt::format("the key mask must be [batch={}, cached + new tokens={}], got {}", x.size(0),
                                   cached + x.size(1), c10::str(key_valid.sizes())));
  }
  if (!start.resumed()) x = (*hook_embed_)(x);
  TransformerBlock::Inputs inputs;
  inputs.self_mask.causal = true;
  inputs.self_mask.key_valid = key_valid;
  inputs.positions = positions;
  x = run_blocks(blocks_, x, start.first_block, inputs, cache);
  if (call_stopped(registry)) return x;
  return (*ln_final_)(x);
}

at::Tensor Qwen2LanguageModel::unembed(const at::Tensor& residual) const {
  return at::linear(residual, unembedding_);
}

void Qwen2LanguageModel::visit(const TensorVisitor& fn) {
  fn(token_embedding_);
  for (auto& block : blocks_) block->visit(fn);
  ln_final_->visit(fn);
  if (tied_unembedding_) {
    unembedding_ = token_embedding_;
  } else {
    fn(unembedding_);
  }
}

}  // namespace speechlens::models
