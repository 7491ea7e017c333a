#include "speechlens/models/qwen2_audio.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "config_json.h"
#include "speechlens/models/qwen2_audio_processor.h"
#include "speechlens/models/registry.h"
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
    : config_(Qwen2AudioConfig::from_json(checkpoint.config(), checkpoint.read_json("generation_config.json"))),
      generation_(GenerationConfig::from_checkpoint(checkpoint)),
      extractor_([&] {
        const nlohmann::json preprocessor = checkpoint.read_json("preprocessor_config.json");
        return preprocessor.is_object() ? audio::WhisperFeatureExtractor(preprocessor)
                                        : audio::WhisperFeatureExtractor(audio::WhisperFeatureOptions{
                                              .n_mels = static_cast<int>(config_.audio.n_mels)});
      }()) {
  set_checkpoint_dir(checkpoint.dir());
  generation_.eos_token_ids = config_.eos_token_ids;
  if (generation_.pad_token_id < 0 && config_.text.pad_token_id) generation_.pad_token_id = *config_.text.pad_token_id;
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
  hook_projector_out_ = &names.stack("projector", hooks::Stack::encoder).with_unit("audio").point("hook_out");
  lm_ = std::make_unique<Qwen2LanguageModel>(WeightScope{loader, lm_scope}, WeightScope{loader, head_scope},
                                             names.stack("lm", hooks::Stack::lm), c.text);
  hook_logits_ = &names.stack("", hooks::Stack::lm).point("hook_logits");
  loader.finish();
  settle_placement();
}

std::unique_ptr<HookedQwen2Audio> HookedQwen2Audio::from_pretrained(const std::filesystem::path& dir,
                                                                    const LoadOptions& options) {
  return std::make_unique<HookedQwen2Audio>(io::Checkpoint::open(dir), options);
}

SPEECHLENS_REGISTER_FAMILY(qwen2_audio, "qwen2_audio", HookedQwen2Audio)

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
      {"sampling_rate", extractor_.options().sampling_rate},
      {"hop_length", extractor_.options().hop_length},
      {"seconds_per_mel_frame", static_cast<double>(extractor_.options().hop_length) / extractor_.options().sampling_rate},
      {"seconds_per_encoder_frame",
       2.0 * static_cast<double>(extractor_.options().hop_length) / extractor_.options().sampling_rate},
  };
}

const Qwen2AudioProcessor& HookedQwen2Audio::processor() const {
  return processor_.get([&] { return Qwen2AudioProcessor::from_dir(checkpoint_dir()); });
}

bool HookedQwen2Audio::has_processor() const {
  return processor_.available([&] { return Qwen2AudioProcessor::from_dir(checkpoint_dir()); });
}

Qwen2AudioEncoding HookedQwen2Audio::encode_in_call(const at::Tensor& mel, const at::Tensor& mel_lengths,
                                                    const RunOptions& options, int64_t batch, hooks::RunContext& ctx) {
  const auto& c = config_;
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
  const auto tokens = pooled_lengths(frames);
  auto& run = ctx.state();
  run.set_lengths("mel", lengths);
  run.set_lengths("encoder", frames);
  run.set_lengths("audio", tokens);
  if (options.encoder_output.defined()) {
    const at::Tensor& audio = options.encoder_output;
    if (audio.dim() != 3 || audio.size(2) != c.text.hidden_size || audio.size(0) < 1 || batch % audio.size(0) != 0) {
      throw InvalidInput(fmt::format("encoder_output must be projected audio features [rows dividing the batch {}, "
                                     "tokens, {}], got {}",
                                     batch, c.text.hidden_size, c10::str(audio.sizes())));
    }
    auto states = audio.to(device_, dtype_);
    return {audio.size(0) == batch ? states : states.repeat({batch / audio.size(0), 1, 1}), tokens};
  }
  const bool resumed = ctx.start_in(hooks::Stack::encoder) != nullptr;
  if (!resumed && (!mel.defined() || mel.dim() != 3 || mel.size(1) != c.audio.n_mels || mel.size(2) != c.mel_frames())) {
    throw InvalidInput(fmt::format(
        "Qwen2-Audio's audio tower takes log-mel features of shape [batch, {}, {}] (every clip padded to "
        "{} frames, as HF's processor does); got {}. Use the processor / model.features(wave)",
        c.audio.n_mels, c.mel_frames(), c.mel_frames(),
        mel.defined() ? c10::str(mel.sizes()) : std::string("nothing")));
  }
  // HF masks padded frames as keys inside the audio tower (its 30 s input is mostly padding).
  const int64_t conv_frames = audio_encoder_->frames_after_convs(c.mel_frames());
  auto key_valid = at::arange(conv_frames, at::kLong).unsqueeze(0) < frames.unsqueeze(1);
  auto states = (*audio_encoder_)(mel.defined() ? enter_graph(mel.to(device_, dtype_)) : mel, key_valid.to(device_),
                                  batch);
  if (ctx.stopped()) return {states, tokens};
  return {(*hook_projector_out_)(projector_(states)), tokens};
}

Qwen2AudioEncoding HookedQwen2Audio::encode_audio(const at::Tensor& mel, const at::Tensor& mel_lengths,
                                                  const RunOptions& options) {
  ModelInputs inputs{mel, {}, mel_lengths, {}};
  Call call(*this, options, inputs);
  auto encoding = encode_in_call(mel, mel_lengths, options, inputs.batch_size(), call.context());
  if (call.context().stopped()) encoding.features = call.result(encoding.features);
  return encoding;
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
                                    std::vector<BlockCache>* cache, int64_t batch, int64_t length) {
  const int64_t cached = (cache && !cache->empty()) ? (*cache)[0].self.length() : 0;
  at::Tensor key_valid;
  if (token_mask.defined()) {
    if (token_mask.dim() != 2 || token_mask.size(0) != batch || token_mask.size(1) != cached + length) {
      throw InvalidInput(fmt::format("token_mask must be [batch={}, cached + new tokens={}], got {}", batch,
                                     cached + length, c10::str(token_mask.sizes())));
    }
    key_valid = token_mask.to(device_).to(at::kBool);
    // No padding: let attention take its unmasked (fused causal) path.
    if (key_valid.all().item<bool>()) key_valid = at::Tensor();
  }
  at::Tensor positions = token_mask.defined()
                             ? positions_from_mask(token_mask).narrow(1, cached, length)
                             : at::arange(cached, cached + length, at::TensorOptions().dtype(at::kLong));
  auto hidden = (*lm_)(embeddings, positions.to(device_), key_valid, cache, batch);
  if (call_stopped(registry_)) return hidden;
  return (*hook_logits_)(lm_->unembed(hidden));
}

void HookedQwen2Audio::set_token_lengths(hooks::RunState& run, const at::Tensor& token_mask, int64_t batch,
                                         int64_t length) const {
  if (token_mask.defined()) {
    run.set_mask("lm", token_mask);
  } else {
    run.set_lengths("lm", at::full({batch}, length, at::kLong));
  }
}

at::Tensor HookedQwen2Audio::run_impl(const ModelInputs& inputs, const RunOptions& options, hooks::RunContext& ctx) {
  const int64_t batch = inputs.batch_size();
  const bool lm_start = ctx.start_in(hooks::Stack::lm) != nullptr;
  std::optional<Qwen2AudioEncoding> audio;
  if (!lm_start && (inputs.features.defined() || options.encoder_output.defined() ||
                    ctx.start_in(hooks::Stack::encoder))) {
    audio = encode_in_call(inputs.features, inputs.feature_lengths, options, batch, ctx);
    if (ctx.stopped()) return {};
  }
  if (!inputs.tokens.defined()) {
    throw InvalidInput("Qwen2-Audio's forward needs input ids (the prompt with <|AUDIO|> expanded; see "
                       "Qwen2AudioProcessor or model.prepare), unless it stops in the audio encoder (stop_at)");
  }
  const int64_t length = inputs.tokens.size(1);
  set_token_lengths(ctx.state(), inputs.token_mask, batch, length);
  at::Tensor embeddings = lm_start ? at::Tensor() : embed(inputs.tokens, audio ? &*audio : nullptr);
  return run_lm(embeddings, inputs.token_mask, nullptr, batch, length);
}

// Incremental decoding: the prompt (audio merged) first, then one token per step.
class HookedQwen2Audio::Session : public DecodeSession {
 public:
  Session(HookedQwen2Audio& model, at::Tensor prompt_embeddings, at::Tensor mask)
      : model_(model), prompt_(std::move(prompt_embeddings)), mask_(std::move(mask)) {}
  at::Tensor step(const at::Tensor& tokens) override {
    at::Tensor embeddings;
    if (first_) {
      first_ = false;
      embeddings = prompt_;
    } else {
      mask_ = at::cat({mask_, at::ones({mask_.size(0), tokens.size(1)}, mask_.options())}, 1);
      embeddings = model_.lm_->embed_tokens(tokens);
    }
    return model_.run_lm(embeddings, mask_, &cache_, tokens.size(0), tokens.size(1));
  }
  int64_t capacity(int64_t prompt_length) const override {
    return model_.config_.text.max_position_embeddings - prompt_length;
  }

 private:
  HookedQwen2Audio& model_;
  at::Tensor prompt_;
  at::Tensor mask_;
  std::vector<BlockCache> cache_;
  bool first_ = true;
};

std::vector<std::vector<int64_t>> HookedQwen2Audio::generate(const ModelInputs& inputs,
                                                             const GenerateOptions& generate,
                                                             const RunOptions& options) {
  if (options.stop_at) throw InvalidInput("generate does not take stop_at");
  if (generate.prompt.defined()) {
    throw InvalidInput("Qwen2-Audio's prompt is the inputs' tokens (with <|AUDIO|> expanded), not a separate prompt");
  }
  if (!inputs.tokens.defined()) throw InvalidInput("Qwen2-Audio's generate needs input ids (the prompt)");
  Call call(*this, options, inputs);
  auto& ctx = call.context();
  if (ctx.start_in(hooks::Stack::lm)) throw InvalidInput("generate resumes (start_at) only in the audio encoder");
  const int64_t batch = inputs.batch_size();
  c10::NoGradGuard no_grad;
  std::optional<Qwen2AudioEncoding> audio;
  if (inputs.features.defined() || options.encoder_output.defined() || ctx.start_in(hooks::Stack::encoder)) {
    audio = encode_in_call(inputs.features, inputs.feature_lengths, options, batch, ctx);
  }
  auto ids = inputs.tokens.to(at::kCPU, at::kLong);
  auto mask = inputs.token_mask.defined() ? inputs.token_mask.to(at::kCPU, at::kLong)
                                          : at::ones(ids.sizes(), at::TensorOptions().dtype(at::kLong));
  ctx.state().set_mask("lm", mask);
  Session session(*this, embed(ids, audio ? &*audio : nullptr), mask);
  const auto& eos = generate.eos_token_ids ? *generate.eos_token_ids : generation_.eos_token_ids;
  // Finished items keep decoding a filler token (HF's pad token), which is dropped.
  const int64_t filler = generation_.pad_token_id >= 0 ? generation_.pad_token_id : (eos.empty() ? 0 : eos.front());
  GenerateOptions resolved = generate;
  if (resolved.max_new_tokens == 0) resolved.max_new_tokens = 256;
  const DecodeRules rules = DecodeRules::resolve(generation_, resolved, filler);
  return greedy_decode(session, ids, rules, config_.text.vocab_size, ctx.state());
}

ModelInputs HookedQwen2Audio::prepare(const std::vector<at::Tensor>& waves, std::optional<int64_t> sampling_rate) const {
  auto clips = to_model_rate(waves, sampling_rate);
  auto features = extractor_(clips);
  ModelInputs inputs;
  inputs.features = features.input_features;
  inputs.feature_lengths = features.attention_mask.sum(-1).to(at::kLong);
  if (has_processor()) {
    std::vector<std::string> texts(clips.size(), std::string(Qwen2AudioProcessor::kAudioBosToken) +
                                                     Qwen2AudioProcessor::kAudioToken +
                                                     Qwen2AudioProcessor::kAudioEosToken);
    auto batch = processor()(texts, clips, PaddingSide::left);
    inputs.tokens = batch.input_ids;
    inputs.token_mask = batch.attention_mask;
  }
  return inputs;
}

std::vector<StackInfo> HookedQwen2Audio::stacks() const {
  return {
      {hooks::Stack::encoder, "audio_encoder", config_.audio.layers, config_.audio.d_model, false, false, "encoder",
       "audio_encoder.ln_post"},
      {hooks::Stack::lm, "lm", config_.text.layers, config_.text.hidden_size, true, true, "lm", "lm.ln_final"},
  };
}

at::Tensor HookedQwen2Audio::final_norm(hooks::Stack stack, const at::Tensor& residual) const {
  if (stack == hooks::Stack::encoder) return audio_encoder_->apply_final_norm(residual);
  return HookedModel::final_norm(stack, residual);
}

const Norm* HookedQwen2Audio::final_norm_layer(hooks::Stack stack) const {
  if (stack == hooks::Stack::encoder) return &audio_encoder_->final_norm();
  if (stack == hooks::Stack::lm) return &lm_->final_norm();
  this->stack(stack);
  return nullptr;
}

at::Tensor HookedQwen2Audio::unembed(hooks::Stack stack, const at::Tensor& normed) const {
  if (stack != hooks::Stack::lm) {
    this->stack(stack);
    throw InvalidInput("Qwen2-Audio's audio encoder has no head of its own: read it through the language model "
                       "(run with start_at at the last audio block's hook_resid_post)");
  }
  return lm_->unembed(normed);
}

at::Tensor HookedQwen2Audio::unembedding(hooks::Stack stack) const {
  if (stack != hooks::Stack::lm) unembed(stack, at::Tensor());
  return lm_->unembedding();
}

void HookedQwen2Audio::visit(const TensorVisitor& fn) {
  audio_encoder_->visit(fn);
  projector_.visit(fn);
  lm_->visit(fn);
}

}  // namespace speechlens::models
