#include "speechlens/models/qwen2_audio.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "config_json.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

using detail::config_ids;
using detail::config_value;

namespace {

const nlohmann::json& sub_config(const nlohmann::json& config, const char* key) {
  static const nlohmann::json empty = nlohmann::json::object();
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return empty;
  if (!it->is_object()) throw InvalidInput(fmt::format("config.json: '{}' must be an object", key));
  return *it;
}

// Valid frames after the audio tower's stride-2 conv (kernel 3, padding 1): rounds up.
at::Tensor conv_lengths(const at::Tensor& mel_lengths) { return at::div(mel_lengths - 1, 2, "floor") + 1; }

// Audio tokens after the average pool (kernel 2, stride 2) of `frames` conv frames: rounds down.
at::Tensor pooled_lengths(const at::Tensor& frames) { return at::div(frames - 2, 2, "floor") + 1; }

}  // namespace

int64_t qwen2_audio_token_count(int64_t mel_frames) {
  return pooled_lengths(conv_lengths(at::scalar_tensor(mel_frames, at::kLong))).item<int64_t>();
}

Qwen2AudioConfig Qwen2AudioConfig::from_json(const nlohmann::json& j, const nlohmann::json& generation) {
  Qwen2AudioConfig c;
  // HF Qwen2AudioConfig's defaults for the audio tower (Qwen2-Audio-7B's).
  const auto& a = sub_config(j, "audio_config");
  c.audio.n_mels = config_value<int64_t>(a, "num_mel_bins", 128);
  c.audio.d_model = config_value<int64_t>(a, "d_model", 1280);
  c.audio.layers = config_value<int64_t>(a, "encoder_layers", 32);
  c.audio.heads = config_value<int64_t>(a, "encoder_attention_heads", 20);
  c.audio.ffn = config_value<int64_t>(a, "encoder_ffn_dim", 5120);
  c.audio.max_source_positions = config_value<int64_t>(a, "max_source_positions", 1500);
  c.audio.activation = config_value<std::string>(a, "activation_function", "gelu");
  c.audio.average_pool = true;
  for (auto [name, value] : {std::pair{"d_model", c.audio.d_model}, {"encoder_layers", c.audio.layers},
                             {"encoder_attention_heads", c.audio.heads}, {"num_mel_bins", c.audio.n_mels},
                             {"max_source_positions", c.audio.max_source_positions}}) {
    if (value <= 0) {
      throw InvalidInput(fmt::format("config.json: audio_config.{} must be positive, got {}", name, value));
    }
  }
  if (c.audio.d_model % c.audio.heads != 0) {
    throw InvalidInput(fmt::format("config.json: audio_config.d_model {} is not divisible by its {} heads",
                                   c.audio.d_model, c.audio.heads));
  }
  c.text = Qwen2Config::from_json(sub_config(j, "text_config"));
  c.audio_token_id = config_value<int64_t>(j, "audio_token_index", config_value<int64_t>(j, "audio_token_id", 151646));
  if (c.audio_token_id < 0 || c.audio_token_id >= c.text.vocab_size) {
    throw InvalidInput(fmt::format("config.json: audio_token_index {} lies outside the vocabulary [0, {})",
                                   c.audio_token_id, c.text.vocab_size));
  }
  c.eos_token_ids = generation.is_object() ? config_ids(generation, "eos_token_id") : std::vector<int64_t>{};
  if (c.eos_token_ids.empty()) c.eos_token_ids = c.text.eos_token_ids;
  if (c.eos_token_ids.empty()) c.eos_token_ids = config_ids(j, "eos_token_id");
  return c;
}

HookedQwen2Audio::HookedQwen2Audio(const io::Checkpoint& checkpoint, const LoadOptions& options)
    : config_(Qwen2AudioConfig::from_json(checkpoint.config(), checkpoint.read_json("generation_config.json"))) {
  io::WeightLoader loader(checkpoint, {options.dtype, options.device});
  // The released checkpoints (and transformers' save_pretrained) use the original layout;
  // transformers 5 holds the model as model.{audio_tower, multi_modal_projector,
  // language_model} + lm_head in memory, and a file saved from that state dict is read too.
  const bool nested = !loader.contains("audio_tower.conv1.weight") && loader.contains("model.audio_tower.conv1.weight");
  const std::string audio_scope = nested ? "model.audio_tower" : "audio_tower";
  const std::string projector_scope = nested ? "model.multi_modal_projector.linear" : "multi_modal_projector.linear";
  const std::string lm_scope = nested ? "model.language_model" : "language_model.model";
  const std::string head_scope = nested ? "lm_head" : "language_model.lm_head";
  const auto& c = config_;
  HookNamer names(registry_, "");

  audio_encoder_ = std::make_unique<WhisperEncoder>(
      WeightScope{loader, audio_scope}, names.stack("audio_encoder", hooks::Stack::encoder), c.audio);
  projector_ = Linear(WeightScope{loader, projector_scope}, c.audio.d_model, c.text.hidden_size, true);
  hook_projector_out_ = &names.child("projector").point("hook_out");
  lm_ = std::make_unique<Qwen2LanguageModel>(WeightScope{loader, lm_scope}, WeightScope{loader, head_scope},
                                             names.stack("lm", hooks::Stack::lm), c.text);
  hook_logits_ = &names.point("hook_logits");
  loader.finish();
  settle_placement();
}

std::unique_ptr<HookedQwen2Audio> HookedQwen2Audio::from_pretrained(const std::filesystem::path& dir,
                                                                    const LoadOptions& options) {
  return std::make_unique<HookedQwen2Audio>(io::Checkpoint::open(dir), options);
}

nlohmann::json HookedQwen2Audio::config_json() const {
  const auto& a = config_.audio;
  const auto& t = config_.text;
  return {
      {"model_family", "qwen2_audio"},
      {"n_layers", t.layers},
      {"d_model", t.hidden_size},
      {"n_heads", t.heads},
      {"n_key_value_heads", t.kv_heads},
      {"d_head", t.head_dim},
      {"d_mlp", t.intermediate_size},
      {"d_vocab", t.vocab_size},
      {"act_fn", t.activation},
      {"normalization_type", "RMS"},
      {"positional_embedding_type", "rotary"},
      {"rotary_base", t.rope_theta},
      {"eps", t.rms_norm_eps},
      {"n_ctx", t.max_position_embeddings},
      {"tied_unembedding", lm_->tied_unembedding()},
      {"n_audio_layers", a.layers},
      {"d_audio", a.d_model},
      {"n_audio_heads", a.heads},
      {"d_audio_head", a.d_model / a.heads},
      {"d_audio_mlp", a.ffn},
      {"n_mels", a.n_mels},
      {"n_ctx_audio", a.max_source_positions},
      {"mel_frames", config_.mel_frames()},
      {"audio_token_id", config_.audio_token_id},
      {"eos_token_ids", config_.eos_token_ids},
  };
}

Qwen2AudioEncoding HookedQwen2Audio::encode_audio(const at::Tensor& mel, const at::Tensor& mel_lengths) {
  const auto& c = config_;
  if (mel.dim() != 3 || mel.size(1) != c.audio.n_mels || mel.size(2) != c.mel_frames()) {
    throw InvalidInput(fmt::format(
        "Qwen2-Audio's audio tower takes log-mel features of shape [batch, {}, {}] (every clip padded to "
        "{} frames, as HF's processor does); got {}. Use the processor / model.features(wave)",
        c.audio.n_mels, c.mel_frames(), c.mel_frames(), c10::str(mel.sizes())));
  }
  const int64_t batch = mel.size(0);
  at::Tensor lengths;
  if (mel_lengths.defined()) {
    if (mel_lengths.dim() != 1 || mel_lengths.size(0) != batch) {
      throw InvalidInput(fmt::format("mel_lengths must be [batch={}], got {}", batch, c10::str(mel_lengths.sizes())));
    }
    lengths = mel_lengths.to(at::kCPU, at::kLong);
    if (batch > 0 && (lengths.min().item<int64_t>() < 1 || lengths.max().item<int64_t>() > c.mel_frames())) {
      throw InvalidInput(fmt::format("mel_lengths must lie in [1, {}]; got values from {} to {}", c.mel_frames(),
                                     lengths.min().item<int64_t>(), lengths.max().item<int64_t>()));
    }
  } else {
    lengths = at::full({batch}, c.mel_frames(), at::kLong);
  }
  const auto frames = conv_lengths(lengths);
  registry_.run_state().encoder_valid_lengths = frames;
  // HF masks padded frames as keys inside the audio tower (its 30 s input is mostly padding).
  const int64_t conv_frames = audio_encoder_->frames_after_convs(c.mel_frames());
  auto key_valid = at::arange(conv_frames, at::kLong).unsqueeze(0) < frames.unsqueeze(1);
  auto states = (*audio_encoder_)(enter_graph(mel.to(device_, dtype_)), key_valid.to(device_));
  return {(*hook_projector_out_)(projector_(states)), pooled_lengths(frames)};
}

at::Tensor HookedQwen2Audio::audio_positions(const at::Tensor& input_ids) const {
  if (input_ids.dim() != 2) {
    throw InvalidInput(fmt::format("input ids must be [batch, seq], got {}", c10::str(input_ids.sizes())));
  }
  return input_ids == config_.audio_token_id;
}

at::Tensor HookedQwen2Audio::text_positions(const at::Tensor& input_ids, const at::Tensor& token_mask) const {
  auto text = audio_positions(input_ids).logical_not();
  if (!token_mask.defined()) return text;
  if (!token_mask.sizes().equals(input_ids.sizes())) {
    throw InvalidInput(fmt::format("token_mask must have the shape of input_ids {}, got {}",
                                   c10::str(input_ids.sizes()), c10::str(token_mask.sizes())));
  }
  return at::logical_and(text, token_mask.to(input_ids.device()).to(at::kBool));
}

at::Tensor HookedQwen2Audio::positions_from_mask(const at::Tensor& token_mask) {
  auto mask = token_mask.to(at::kLong);
  return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0);
}

at::Tensor HookedQwen2Audio::embed(const at::Tensor& input_ids, const Qwen2AudioEncoding* audio) const {
  auto embeddings = enter_graph(lm_->embed_tokens(input_ids));
  auto audio_mask = audio_positions(input_ids).to(embeddings.device());
  const int64_t audio_tokens = audio_mask.sum().item<int64_t>();
  if (!audio) {
    if (audio_tokens > 0) {
      throw InvalidInput(fmt::format("the input ids hold {} <|AUDIO|> tokens (id {}) but no audio features were "
                                     "given",
                                     audio_tokens, config_.audio_token_id));
    }
    return embeddings;
  }
  const auto& features = audio->features;
  const auto counts = audio->token_counts.to(at::kCPU, at::kLong);
  const int64_t audio_features = counts.sum().item<int64_t>();
  if (audio_tokens != audio_features) {
    std::string per_clip;
    for (int64_t i = 0; i < counts.numel(); ++i) {
      per_clip += (i ? ", " : "") + std::to_string(counts[i].item<int64_t>());
    }
    throw InvalidInput(fmt::format(
        "the input ids hold {} <|AUDIO|> tokens but the {} clip(s) give {} audio tokens ({}); expand each "
        "<|AUDIO|> placeholder to its clip's count with Qwen2AudioProcessor (one clip per placeholder, in "
        "batch order)",
        audio_tokens, features.size(0), audio_features, per_clip));
  }
  // Each clip's first token_counts[b] rows, clips in order, fill the <|AUDIO|> slots row-major.
  auto valid = at::arange(features.size(1), at::kLong).unsqueeze(0) < counts.unsqueeze(1);
  auto rows = features.masked_select(valid.to(features.device()).unsqueeze(-1))
                  .view({-1, features.size(2)})
                  .to(embeddings.device(), embeddings.scalar_type());
  return embeddings.masked_scatter(audio_mask.unsqueeze(-1), rows);
}

at::Tensor HookedQwen2Audio::run_lm(const at::Tensor& embeddings, const at::Tensor& token_mask,
                                    std::vector<BlockCache>* cache, const at::Tensor& given_positions) {
  const int64_t cached = (cache && !cache->empty()) ? (*cache)[0].self.length() : 0;
  const int64_t length = embeddings.size(1);
  at::Tensor key_valid;
  if (token_mask.defined()) {
    if (token_mask.dim() != 2 || token_mask.size(0) != embeddings.size(0) || token_mask.size(1) != cached + length) {
      throw InvalidInput(fmt::format("token_mask must be [batch={}, cached + new tokens={}], got {}",
                                     embeddings.size(0), cached + length, c10::str(token_mask.sizes())));
    }
    key_valid = token_mask.to(device_).to(at::kBool);
    // No padding: let attention take its unmasked (fused causal) path.
    if (key_valid.all().item<bool>()) key_valid = at::Tensor();
  }
  at::Tensor positions = given_positions;
  if (!positions.defined()) {
    positions = token_mask.defined()
                    ? positions_from_mask(token_mask).narrow(1, cached, length)
                    : at::arange(cached, cached + length, at::TensorOptions().dtype(at::kLong));
  }
  auto hidden = (*lm_)(embeddings, positions.to(device_), key_valid, cache);
  return (*hook_logits_)(lm_->unembed(hidden));
}

void HookedQwen2Audio::set_token_lengths(const at::Tensor& token_mask) {
  auto& run = registry_.run_state();
  run.decoder_valid_lengths = at::Tensor();
  if (!token_mask.defined() || token_mask.dim() != 2) return;
  // Hooks see padding through valid lengths, which describe right padding only; a left-padded
  // batch leaves them unset (use text_positions / audio_positions instead).
  auto mask = token_mask.to(at::kCPU, at::kLong);
  auto lengths = mask.sum(-1);
  auto prefix = at::arange(mask.size(1), at::kLong).unsqueeze(0) < lengths.unsqueeze(1);
  if (at::equal(prefix, mask.to(at::kBool))) run.decoder_valid_lengths = lengths;
}

at::Tensor HookedQwen2Audio::forward(const ModelInputs& inputs) {
  if (!inputs.tokens.defined()) {
    throw InvalidInput("Qwen2-Audio's forward needs input ids (the prompt with <|AUDIO|> expanded; see "
                       "Qwen2AudioProcessor)");
  }
  auto& run = registry_.run_state();
  run.decode_step = -1;
  set_token_lengths(inputs.token_mask);
  std::optional<Qwen2AudioEncoding> audio;
  if (inputs.features.defined()) {
    audio = encode_audio(inputs.features, inputs.feature_lengths);
  } else {
    run.encoder_valid_lengths = at::Tensor();
  }
  auto embeddings = embed(inputs.tokens, audio ? &*audio : nullptr);
  return run_lm(embeddings, inputs.token_mask);
}

std::vector<std::vector<int64_t>> HookedQwen2Audio::generate_greedy(const at::Tensor& mel,
                                                                    const at::Tensor& mel_lengths,
                                                                    const at::Tensor& input_ids,
                                                                    const at::Tensor& token_mask,
                                                                    const Qwen2AudioGenerateOptions& options) {
  if (input_ids.dim() != 2) {
    throw InvalidInput(fmt::format("input ids must be [batch, seq], got {}", c10::str(input_ids.sizes())));
  }
  if (token_mask.defined() && !token_mask.sizes().equals(input_ids.sizes())) {
    throw InvalidInput(fmt::format("token_mask must have the shape of input_ids {}, got {}",
                                   c10::str(input_ids.sizes()), c10::str(token_mask.sizes())));
  }
  if (options.max_new_tokens < 1) {
    throw InvalidInput(fmt::format("max_new_tokens must be at least 1, got {}", options.max_new_tokens));
  }
  const auto& eos = options.eos_token_ids.empty() ? config_.eos_token_ids : options.eos_token_ids;
  auto& run = registry_.run_state();
  struct StepReset {
    hooks::RunState& state;
    ~StepReset() { state.decode_step = -1; }
  } reset{run};
  run.decode_step = -1;
  run.decoder_valid_lengths = at::Tensor();

  std::optional<Qwen2AudioEncoding> audio;
  if (mel.defined()) audio = encode_audio(mel, mel_lengths);
  const int64_t batch = input_ids.size(0);
  auto mask = token_mask.defined() ? token_mask.to(at::kCPU, at::kLong)
                                   : at::ones(input_ids.sizes(), at::TensorOptions().dtype(at::kLong));
  // Finished items keep decoding a filler token (HF's pad token), which is dropped.
  const int64_t filler = config_.text.pad_token_id.value_or(eos.empty() ? 0 : eos.front());

  std::vector<std::vector<int64_t>> generated(batch);
  std::vector<bool> done(batch, false);
  std::vector<BlockCache> cache;
  at::Tensor step_embeddings;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    run.decode_step = step;
    if (step == 0) step_embeddings = embed(input_ids, audio ? &*audio : nullptr);
    auto logits = run_lm(step_embeddings, mask, &cache).select(1, -1).to(at::kFloat);
    auto next = logits.argmax(-1).to(at::kCPU);
    auto next_acc = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) {
        next_acc[b] = filler;
        continue;
      }
      if (std::find(eos.begin(), eos.end(), next_acc[b]) != eos.end()) {
        done[b] = true;
      } else {
        generated[b].push_back(next_acc[b]);
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    mask = at::cat({mask, at::ones({batch, 1}, mask.options())}, 1);
    step_embeddings = lm_->embed_tokens(next.unsqueeze(1));
  }
  return generated;
}

void HookedQwen2Audio::visit(const TensorVisitor& fn) {
  audio_encoder_->visit(fn);
  projector_.visit(fn);
  lm_->visit(fn);
}

}  // namespace speechlens::models
