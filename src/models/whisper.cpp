#include "speechlens/models/whisper.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config_json.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

namespace {

using detail::config_value;

// Whisper has one end-of-text id; a config may still spell it as a list.
int64_t first_id(const nlohmann::json& config, const char* key, int64_t fallback) {
  auto ids = detail::config_ids(config, key);
  return ids.empty() ? fallback : ids.front();
}

}  // namespace

BlockConfig whisper_block_config(int64_t d_model, int64_t heads, int64_t ffn, const std::string& activation,
                                 bool cross_attention) {
  BlockConfig block;
  block.attention.d_model = d_model;
  block.attention.n_heads = heads;
  block.attention.k_bias = false;  // Whisper's key projection has no bias
  block.mlp.d_model = d_model;
  block.mlp.d_mlp = ffn;
  block.mlp.activation = activation_from_name(activation);
  block.norm = NormKind::layer_norm;
  block.norm_eps = 1e-5;
  block.pre_norm = true;
  block.cross_attention = cross_attention;
  return block;
}

WhisperEncoder::WhisperEncoder(const WeightScope& weights, const HookNamer& hooks,
                               const WhisperEncoderConfig& config)
    : config_(config) {
  const auto& c = config_;
  // The mel and conv activations are channels-first [B, C, T] at the mel frame rate, so they
  // belong to no stack: the encoder's valid lengths (and trim_padding) index dim 1 of [B, T, D].
  const HookNamer channels_first = hooks.stack("", hooks::Stack::none);
  hook_mel_ = &channels_first.point("hook_mel");
  conv1_ = Conv1d(weights.child("conv1"), c.n_mels, c.d_model, 3, 1, 1, true);
  hook_conv1_out_ = &channels_first.child("conv1").point("hook_out");
  conv2_ = Conv1d(weights.child("conv2"), c.d_model, c.d_model, 3, 2, 1, true);
  hook_conv2_out_ = &channels_first.child("conv2").point("hook_out");
  positions_ = weights.take("embed_positions.weight", {c.max_source_positions, c.d_model});
  hook_pos_embed_ = &hooks.point("hook_pos_embed");
  const BlockConfig block = whisper_block_config(c.d_model, c.heads, c.ffn, c.activation, false);
  for (int64_t i = 0; i < c.layers; ++i) {
    blocks_.push_back(std::make_unique<TransformerBlock>(weights.child("layers." + std::to_string(i)),
                                                         hooks.layer("blocks", i), block));
  }
  if (c.average_pool) hook_pooled_ = &hooks.point("hook_pooled");
  ln_post_ = std::make_unique<Norm>(weights.child("layer_norm"), hooks.child("ln_post"), NormKind::layer_norm,
                                    c.d_model, 1e-5);
}

at::Tensor WhisperEncoder::operator()(const at::Tensor& mel_in, const at::Tensor& key_valid) const {
  const auto& c = config_;
  if (mel_in.dim() != 3 || mel_in.size(1) != c.n_mels) {
    throw InvalidInput(fmt::format(
        "Whisper expects log-mel features of shape [batch, {}, frames], got {}. Use "
        "model.features(wave) to compute them",
        c.n_mels, c10::str(mel_in.sizes())));
  }
  const int64_t frames = mel_in.size(2) > 0 ? frames_after_convs(mel_in.size(2)) : 0;
  if (frames < 1 || frames > c.max_source_positions) {
    throw InvalidInput(fmt::format("Whisper's encoder takes 1 to {} mel frames (30 s); got {}",
                                   2 * c.max_source_positions, mel_in.size(2)));
  }
  auto mel = (*hook_mel_)(mel_in);
  auto x = (*hook_conv1_out_)(at::gelu(conv1_(mel)));
  x = (*hook_conv2_out_)(at::gelu(conv2_(x)));
  x = x.transpose(1, 2);  // [B, T, D]
  x = x + (*hook_pos_embed_)(positions_.narrow(0, 0, frames).expand_as(x));
  TransformerBlock::Inputs inputs;
  inputs.self_mask.key_valid = key_valid;
  for (const auto& block : blocks_) x = (*block)(x, inputs);
  if (hook_pooled_) {
    x = (*hook_pooled_)(at::avg_pool1d(x.transpose(1, 2), {2}, {2}).transpose(1, 2));
  }
  return (*ln_post_)(x);
}

void WhisperEncoder::visit(const TensorVisitor& fn) {
  conv1_.visit(fn);
  conv2_.visit(fn);
  fn(positions_);
  for (auto& block : blocks_) block->visit(fn);
  ln_post_->visit(fn);
}

WhisperEncoderConfig WhisperConfig::encoder() const {
  WhisperEncoderConfig e;
  e.n_mels = n_mels;
  e.d_model = d_model;
  e.layers = encoder_layers;
  e.heads = encoder_heads;
  e.ffn = encoder_ffn;
  e.max_source_positions = max_source_positions;
  e.activation = activation;
  return e;
}

WhisperConfig WhisperConfig::from_json(const nlohmann::json& j) {
  WhisperConfig c;
  c.n_mels = config_value<int64_t>(j, "num_mel_bins", c.n_mels);
  c.vocab_size = config_value<int64_t>(j, "vocab_size", c.vocab_size);
  c.d_model = config_value<int64_t>(j, "d_model", c.d_model);
  c.encoder_layers = config_value<int64_t>(j, "encoder_layers", c.encoder_layers);
  c.encoder_heads = config_value<int64_t>(j, "encoder_attention_heads", c.encoder_heads);
  c.encoder_ffn = config_value<int64_t>(j, "encoder_ffn_dim", c.encoder_ffn);
  c.decoder_layers = config_value<int64_t>(j, "decoder_layers", c.decoder_layers);
  c.decoder_heads = config_value<int64_t>(j, "decoder_attention_heads", c.decoder_heads);
  c.decoder_ffn = config_value<int64_t>(j, "decoder_ffn_dim", c.decoder_ffn);
  c.max_source_positions = config_value<int64_t>(j, "max_source_positions", c.max_source_positions);
  c.max_target_positions = config_value<int64_t>(j, "max_target_positions", c.max_target_positions);
  c.activation = config_value<std::string>(j, "activation_function", c.activation);
  c.decoder_start_token_id = first_id(j, "decoder_start_token_id", c.decoder_start_token_id);
  c.eos_token_id = first_id(j, "eos_token_id", c.eos_token_id);
  c.pad_token_id = first_id(j, "pad_token_id", c.pad_token_id);
  c.suppress_tokens = config_value<std::vector<int64_t>>(j, "suppress_tokens", {});
  c.begin_suppress_tokens = config_value<std::vector<int64_t>>(j, "begin_suppress_tokens", {});
  for (auto [name, value] : {std::pair{"d_model", c.d_model}, {"encoder_layers", c.encoder_layers},
                             {"decoder_layers", c.decoder_layers}, {"num_mel_bins", c.n_mels},
                             {"encoder_attention_heads", c.encoder_heads},
                             {"decoder_attention_heads", c.decoder_heads}}) {
    if (value <= 0) throw InvalidInput(fmt::format("config.json: '{}' must be positive, got {}", name, value));
  }
  if (c.d_model % c.encoder_heads != 0 || c.d_model % c.decoder_heads != 0) {
    throw InvalidInput(fmt::format("config.json: d_model {} is not divisible by the head counts ({}, {})",
                                   c.d_model, c.encoder_heads, c.decoder_heads));
  }
  return c;
}

HookedWhisper::HookedWhisper(const io::Checkpoint& checkpoint, const LoadOptions& options)
    : config_(WhisperConfig::from_json(checkpoint.config())) {
  io::WeightLoader loader(checkpoint, {options.dtype, options.device});
  // WhisperForConditionalGeneration nests everything under "model."; WhisperModel does not.
  const std::string root = loader.contains("model.encoder.conv1.weight") ? "model" : "";
  WeightScope encoder_weights{loader, join(root, "encoder")};
  WeightScope decoder_weights{loader, join(root, "decoder")};
  HookNamer names(registry_, "");
  const auto& c = config_;

  encoder_ = std::make_unique<WhisperEncoder>(encoder_weights, names.stack("encoder", hooks::Stack::encoder),
                                              c.encoder());

  // Decoder.
  HookNamer decoder = names.stack("decoder", hooks::Stack::decoder);
  token_embedding_ = decoder_weights.take("embed_tokens.weight", {c.vocab_size, c.d_model});
  hook_tok_embed_ = &decoder.point("hook_tok_embed");
  decoder_positions_ = decoder_weights.take("embed_positions.weight", {c.max_target_positions, c.d_model});
  hook_decoder_pos_embed_ = &decoder.point("hook_pos_embed");
  const BlockConfig decoder_block =
      whisper_block_config(c.d_model, c.decoder_heads, c.decoder_ffn, c.activation, true);
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    decoder_blocks_.push_back(std::make_unique<TransformerBlock>(
        decoder_weights.child("layers." + std::to_string(i)), decoder.layer("blocks", i), decoder_block));
  }
  decoder_ln_final_ = std::make_unique<Norm>(decoder_weights.child("layer_norm"), decoder.child("ln_final"),
                                             NormKind::layer_norm, c.d_model, 1e-5);
  // HF ties proj_out to the token embedding and usually omits it from the file.
  if (auto proj_out = loader.take_optional("proj_out.weight", {c.vocab_size, c.d_model})) {
    unembedding_ = *proj_out;
    tied_unembedding_ = false;
  } else {
    unembedding_ = token_embedding_;
  }
  hook_logits_ = &names.point("hook_logits");
  loader.finish();
  settle_placement();
}

std::unique_ptr<HookedWhisper> HookedWhisper::from_pretrained(const std::filesystem::path& dir,
                                                              const LoadOptions& options) {
  return std::make_unique<HookedWhisper>(io::Checkpoint::open(dir), options);
}

nlohmann::json HookedWhisper::config_json() const {
  const auto& c = config_;
  return {
      {"model_family", "whisper"},
      {"n_layers", c.encoder_layers},
      {"n_encoder_layers", c.encoder_layers},
      {"n_decoder_layers", c.decoder_layers},
      {"d_model", c.d_model},
      {"n_heads", c.encoder_heads},
      {"n_encoder_heads", c.encoder_heads},
      {"n_decoder_heads", c.decoder_heads},
      {"d_head", c.d_model / c.encoder_heads},
      {"d_mlp", c.encoder_ffn},
      {"d_mlp_decoder", c.decoder_ffn},
      {"d_vocab", c.vocab_size},
      {"n_mels", c.n_mels},
      {"n_ctx_encoder", c.max_source_positions},
      {"n_ctx_decoder", c.max_target_positions},
      {"act_fn", c.activation},
      {"decoder_start_token_id", c.decoder_start_token_id},
      {"eos_token_id", c.eos_token_id},
      {"tied_unembedding", tied_unembedding_},
  };
}

void HookedWhisper::set_run_lengths(const at::Tensor& mel_lengths, int64_t batch) {
  auto& run = registry_.run_state();
  if (!mel_lengths.defined()) {
    run.encoder_valid_lengths = at::Tensor();
    return;
  }
  if (mel_lengths.dim() != 1 || mel_lengths.size(0) != batch) {
    throw InvalidInput(fmt::format("mel_lengths must be [batch={}], got {}", batch, c10::str(mel_lengths.sizes())));
  }
  // conv2 (kernel 3, stride 2, padding 1) halves the frame count, rounding up.
  auto lengths = mel_lengths.to(at::kCPU, at::kLong);
  run.encoder_valid_lengths = at::div(lengths - 1, 2, "floor") + 1;
}

at::Tensor HookedWhisper::encode(const at::Tensor& mel, const at::Tensor& mel_lengths) {
  if (mel.dim() == 3) set_run_lengths(mel_lengths, mel.size(0));
  // Whisper attends to every frame, padding included, exactly as trained.
  return (*encoder_)(enter_graph(mel.to(device_, dtype_)));
}

at::Tensor HookedWhisper::unembed(const at::Tensor& residual) const {
  return at::linear(residual, unembedding_);
}

at::Tensor HookedWhisper::decode(const at::Tensor& tokens, const at::Tensor& audio,
                                 std::vector<BlockCache>* cache) {
  const auto& c = config_;
  if (tokens.dim() != 2) {
    throw InvalidInput(fmt::format("decoder tokens must be [batch, seq], got {}", c10::str(tokens.sizes())));
  }
  if (audio.dim() != 3 || audio.size(0) != tokens.size(0) || audio.size(2) != c.d_model) {
    throw InvalidInput(fmt::format("audio states must be [batch={}, frames, {}], got {}", tokens.size(0),
                                   c.d_model, c10::str(audio.sizes())));
  }
  if (cache && cache->empty()) cache->resize(decoder_blocks_.size());
  const int64_t offset = (cache && !cache->empty()) ? (*cache)[0].self.length() : 0;
  const int64_t length = tokens.size(1);
  if (offset + length > c.max_target_positions) {
    throw InvalidInput(fmt::format("Whisper's decoder holds at most {} tokens; got {}",
                                   c.max_target_positions, offset + length));
  }
  auto ids = tokens.to(device_, at::kLong);
  if (ids.numel() > 0 && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size)) {
    throw InvalidInput(fmt::format("token ids must lie in [0, {})", c.vocab_size));
  }
  auto x = (*hook_tok_embed_)(enter_graph(at::embedding(token_embedding_, ids)));
  x = x + (*hook_decoder_pos_embed_)(decoder_positions_.narrow(0, offset, length).expand_as(x));
  TransformerBlock::Inputs inputs;
  inputs.self_mask.causal = true;
  inputs.cross_source = &audio;
  for (size_t i = 0; i < decoder_blocks_.size(); ++i) {
    inputs.cache = cache ? &(*cache)[i] : nullptr;
    x = (*decoder_blocks_[i])(x, inputs);
  }
  return (*hook_logits_)(unembed((*decoder_ln_final_)(x)));
}

at::Tensor HookedWhisper::forward(const ModelInputs& inputs) {
  if (!inputs.tokens.defined()) {
    throw InvalidInput("Whisper's forward needs decoder tokens, e.g. the start-of-transcript prompt");
  }
  registry_.run_state().decode_step = -1;
  return decode(inputs.tokens, encode(inputs.features, inputs.feature_lengths));
}

std::vector<std::vector<int64_t>> HookedWhisper::generate_greedy(const at::Tensor& mel,
                                                                 const GreedyOptions& options,
                                                                 const at::Tensor& mel_lengths) {
  registry_.run_state().decode_step = -1;
  return generate_from_audio(encode(mel, mel_lengths), options);
}

std::vector<std::vector<int64_t>> HookedWhisper::generate_from_audio(const at::Tensor& audio,
                                                                     const GreedyOptions& options) {
  const auto& c = config_;
  auto& run = registry_.run_state();
  std::vector<int64_t> prompt = options.prompt;
  if (prompt.empty()) prompt.push_back(c.decoder_start_token_id);
  const int64_t budget = c.max_target_positions - static_cast<int64_t>(prompt.size());
  const int64_t max_new = options.max_new_tokens > 0 ? std::min(options.max_new_tokens, budget) : budget;

  if (audio.dim() != 3 || audio.size(2) != c.d_model) {
    throw InvalidInput(fmt::format("audio states must be [batch, frames, {}], got {}", c.d_model,
                                   c10::str(audio.sizes())));
  }
  const int64_t batch = audio.size(0);
  auto tokens = at::tensor(prompt, at::kLong).to(device_).unsqueeze(0).repeat({batch, 1});

  // Suppression masks: -inf on the suppressed ids, added to the step's logits.
  auto suppress_mask = [&](const std::vector<int64_t>& ids) {
    auto mask = at::zeros({c.vocab_size}, at::TensorOptions().dtype(at::kFloat).device(device_));
    for (int64_t id : ids) {
      if (id >= 0 && id < c.vocab_size) mask[id] = -std::numeric_limits<float>::infinity();
    }
    return mask;
  };
  const auto& suppress = options.suppress_tokens ? *options.suppress_tokens : c.suppress_tokens;
  const auto& begin_suppress = options.begin_suppress_tokens ? *options.begin_suppress_tokens : c.begin_suppress_tokens;
  const auto always = suppress_mask(options.apply_suppress_tokens ? suppress : std::vector<int64_t>{});
  const auto at_begin = suppress_mask(options.apply_suppress_tokens ? begin_suppress : std::vector<int64_t>{});

  std::vector<std::vector<int64_t>> generated(batch);
  std::vector<bool> done(batch, false);
  std::vector<BlockCache> cache;
  at::Tensor step_input = tokens;
  struct StepReset {
    hooks::RunState& state;
    ~StepReset() { state.decode_step = -1; }
  } reset{run};
  for (int64_t step = 0; step < max_new; ++step) {
    run.decode_step = step;
    auto logits = decode(step_input, audio, &cache).select(1, -1).to(at::kFloat) + always;
    if (step == 0) logits = logits + at_begin;
    auto next = logits.argmax(-1).to(at::kCPU);
    auto next_acc = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) continue;
      if (next_acc[b] == c.eos_token_id) {
        done[b] = true;
      } else {
        generated[b].push_back(next_acc[b]);
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    // Finished items keep decoding end-of-text, which is dropped.
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) next[b] = c.eos_token_id;
    }
    step_input = next.to(device_).unsqueeze(1);
  }
  return generated;
}

void HookedWhisper::visit(const TensorVisitor& fn) {
  encoder_->visit(fn);
  fn(token_embedding_);
  fn(decoder_positions_);
  if (tied_unembedding_) {
    unembedding_ = token_embedding_;
  } else {
    fn(unembedding_);
  }
  for (auto& block : decoder_blocks_) block->visit(fn);
  decoder_ln_final_->visit(fn);
}

}  // namespace speechlens::models
