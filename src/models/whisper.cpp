#include "speechlens/models/whisper.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config_json.h"
#include "speechlens/models/registry.h"
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"

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
  // The mel and conv activations are channels-first [B, C, T]: time is dim 2, in mel frames
  // until conv2 halves it to the encoder's frames.
  const HookNamer front = hooks.stack("", hooks::Stack::none);
  hook_mel_ = &front.point("hook_mel", {{2, "mel"}});
  conv1_ = Conv1d(weights.child("conv1"), c.n_mels, c.d_model, 3, 1, 1, true);
  hook_conv1_out_ = &front.child("conv1").point("hook_out", {{2, "mel"}});
  conv2_ = Conv1d(weights.child("conv2"), c.d_model, c.d_model, 3, 2, 1, true);
  hook_conv2_out_ = &front.child("conv2").point("hook_out", {{2, "encoder"}});
  positions_ = weights.take("embed_positions.weight", {c.max_source_positions, c.d_model});
  hook_pos_embed_ = &hooks.point("hook_pos_embed");
  const BlockConfig block = whisper_block_config(c.d_model, c.heads, c.ffn, c.activation, false);
  for (int64_t i = 0; i < c.layers; ++i) {
    blocks_.push_back(std::make_unique<TransformerBlock>(weights.child("layers." + std::to_string(i)),
                                                         hooks.layer("blocks", i), block));
  }
  // Qwen2-Audio pools frames by 2: what follows counts "audio" positions (its audio tokens).
  const HookNamer after_pool = c.average_pool ? hooks.with_unit("audio") : hooks;
  if (c.average_pool) hook_pooled_ = &after_pool.point("hook_pooled");
  ln_post_ = std::make_unique<Norm>(weights.child("layer_norm"), after_pool.child("ln_post"), NormKind::layer_norm,
                                    c.d_model, 1e-5);
}

at::Tensor WhisperEncoder::apply_final_norm(const at::Tensor& residual) const {
  auto x = residual;
  if (config_.average_pool) x = at::avg_pool1d(x.transpose(1, 2), {2}, {2}).transpose(1, 2);
  return ln_post_->apply(x);
}

at::Tensor WhisperEncoder::operator()(const at::Tensor& mel_in, const at::Tensor& key_valid, int64_t batch) const {
  const auto& c = config_;
  const hooks::HookRegistry& registry = *hook_mel_->info().registry;
  at::Tensor x;
  int64_t first = 0;
  const at::Device device = positions_.device();
  const at::ScalarType dtype = positions_.scalar_type();
  if (batch < 0) batch = mel_in.defined() && mel_in.dim() > 0 ? mel_in.size(0) : 0;
  StackStart start = stack_start(registry, hooks::Stack::encoder, blocks_, batch, device, dtype);
  if (start.resumed()) {
    x = start.residual;
    first = start.first_block;
  } else {
    if (!mel_in.defined() || mel_in.dim() != 3 || mel_in.size(1) != c.n_mels) {
      throw InvalidInput(fmt::format(
          "Whisper expects log-mel features of shape [batch, {}, frames], got {}. Use "
          "model.features(wave) to compute them",
          c.n_mels, mel_in.defined() ? c10::str(mel_in.sizes()) : std::string("nothing")));
    }
    const int64_t frames = mel_in.size(2) > 0 ? frames_after_convs(mel_in.size(2)) : 0;
    if (frames < 1 || frames > c.max_source_positions) {
      throw InvalidInput(fmt::format("Whisper's encoder takes 1 to {} mel frames (30 s); got {}",
                                     2 * c.max_source_positions, mel_in.size(2)));
    }
    auto mel = (*hook_mel_)(mel_in);
    x = (*hook_conv1_out_)(at::gelu(conv1_(mel)));
    x = (*hook_conv2_out_)(at::gelu(conv2_(x)));
    x = x.transpose(1, 2);  // [B, T, D]
    x = x + (*hook_pos_embed_)(positions_.narrow(0, 0, frames).expand_as(x));
  }
  TransformerBlock::Inputs inputs;
  inputs.self_mask.key_valid = key_valid;
  x = run_blocks(blocks_, x, first, inputs);
  if (call_stopped(registry)) return x;
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
    : config_(WhisperConfig::from_json(checkpoint.config())),
      generation_(GenerationConfig::from_checkpoint(checkpoint)),
      extractor_([&] {
        const nlohmann::json preprocessor = checkpoint.read_json("preprocessor_config.json");
        return preprocessor.is_object() ? audio::WhisperFeatureExtractor(preprocessor)
                                        : audio::WhisperFeatureExtractor(audio::WhisperFeatureOptions{
                                              .n_mels = static_cast<int>(config_.n_mels)});
      }()) {
  if (extractor_.options().n_mels != config_.n_mels) {
    throw InvalidInput(fmt::format("{}: preprocessor_config.json makes {} mel bins but config.json's model takes {}",
                                   checkpoint.dir().string(), extractor_.options().n_mels, config_.n_mels));
  }
  if (generation_.decoder_start_token_id < 0) generation_.decoder_start_token_id = config_.decoder_start_token_id;
  if (generation_.eos_token_ids.empty()) generation_.eos_token_ids = {config_.eos_token_id};
  set_checkpoint_dir(checkpoint.dir());
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
  hook_logits_ = &names.stack("", hooks::Stack::decoder).point("hook_logits");
  loader.finish();
  settle_placement();
}

std::unique_ptr<HookedWhisper> HookedWhisper::from_pretrained(const std::filesystem::path& dir,
                                                              const LoadOptions& options) {
  return std::make_unique<HookedWhisper>(io::Checkpoint::open(dir), options);
}

SPEECHLENS_REGISTER_FAMILY(whisper, "whisper", HookedWhisper)

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
      {"decoder_start_token_id", generation_.decoder_start_token_id},
      {"eos_token_id", generation_.eos_token_ids.front()},
      {"tied_unembedding", tied_unembedding_},
      {"sampling_rate", extractor_.options().sampling_rate},
      {"hop_length", extractor_.options().hop_length},
      {"mel_frames", extractor_.frames()},
      {"seconds_per_mel_frame", static_cast<double>(extractor_.options().hop_length) / extractor_.options().sampling_rate},
      {"seconds_per_encoder_frame",
       2.0 * static_cast<double>(extractor_.options().hop_length) / extractor_.options().sampling_rate},
  };
}

// Only decoding text needs the tokenizer: features, forwards and generate run without one.
const text::WhisperTokenizer& HookedWhisper::tokenizer() const {
  return tokenizer_.get([&] { return text::WhisperTokenizer::from_dir(checkpoint_dir()); });
}

bool HookedWhisper::has_tokenizer() const {
  return tokenizer_.available([&] { return text::WhisperTokenizer::from_dir(checkpoint_dir()); });
}

std::vector<int64_t> HookedWhisper::default_prompt(std::optional<std::string> language, const std::string& task) const {
  if (has_tokenizer()) return tokenizer().sot_sequence(language, task, /*timestamps=*/false);
  // Without a tokenizer: generation_config.json's ids (what HF generate builds the prompt from).
  const nlohmann::json& g = generation_.generation_json;
  std::vector<int64_t> prompt{generation_.decoder_start_token_id};
  if (!g.is_object()) return prompt;
  const bool multilingual = g.value("is_multilingual", false);
  if (multilingual) {
    const std::string code = "<|" + language.value_or("en") + "|>";
    if (g.contains("lang_to_id") && g["lang_to_id"].is_object() && g["lang_to_id"].contains(code) &&
        g["lang_to_id"][code].is_number_integer()) {
      prompt.push_back(g["lang_to_id"][code].get<int64_t>());
    } else if (language) {
      throw InvalidInput(fmt::format("language '{}' is not in generation_config.json's lang_to_id", *language));
    }
    if (g.contains("task_to_id") && g["task_to_id"].is_object() && g["task_to_id"].contains(task) &&
        g["task_to_id"][task].is_number_integer()) {
      prompt.push_back(g["task_to_id"][task].get<int64_t>());
    }
  } else if (task != "transcribe" || (language && *language != "en" && *language != "english")) {
    throw InvalidInput("this is an English-only Whisper checkpoint; it can only transcribe English");
  }
  if (g.contains("no_timestamps_token_id") && g["no_timestamps_token_id"].is_number_integer()) {
    prompt.push_back(g["no_timestamps_token_id"].get<int64_t>());
  }
  return prompt;
}

at::Tensor HookedWhisper::encoder_lengths(const at::Tensor& mel_lengths) {
  // conv2 (kernel 3, stride 2, padding 1) halves the frame count, rounding up.
  auto lengths = mel_lengths.to(at::kCPU, at::kLong);
  return at::div(lengths - 1, 2, "floor") + 1;
}

at::Tensor HookedWhisper::encode_in_call(const at::Tensor& mel, const at::Tensor& mel_lengths,
                                         const RunOptions& options, int64_t batch, hooks::RunContext& ctx) {
  if (mel_lengths.defined()) {
    ctx.state().set_lengths("mel", mel_lengths);
    ctx.state().set_lengths("encoder", encoder_lengths(mel_lengths));
  }
  if (options.encoder_output.defined()) {
    const at::Tensor& audio = options.encoder_output;
    if (audio.dim() != 3 || audio.size(2) != config_.d_model || audio.size(0) < 1 || batch % audio.size(0) != 0) {
      throw InvalidInput(fmt::format("encoder_output must be audio states [rows dividing the batch {}, frames, {}], "
                                     "got {}",
                                     batch, config_.d_model, c10::str(audio.sizes())));
    }
    auto states = audio.to(device_, dtype_);
    return audio.size(0) == batch ? states : states.repeat({batch / audio.size(0), 1, 1});
  }
  // Whisper attends to every frame, padding included, exactly as trained.
  return (*encoder_)(mel.defined() ? enter_graph(mel.to(device_, dtype_)) : mel, {}, batch);
}

at::Tensor HookedWhisper::decode_in_call(const at::Tensor& tokens, const at::Tensor& audio,
                                         std::vector<BlockCache>* cache) {
  const auto& c = config_;
  if (tokens.dim() != 2) {
    throw InvalidInput(fmt::format("decoder tokens must be [batch, seq], got {}", c10::str(tokens.sizes())));
  }
  if (audio.dim() != 3 || audio.size(0) != tokens.size(0) || audio.size(2) != c.d_model) {
    throw InvalidInput(fmt::format("audio states must be [batch={}, frames, {}], got {}", tokens.size(0), c.d_model,
                                   c10::str(audio.sizes())));
  }
  if (cache && cache->empty()) cache->resize(decoder_blocks_.size());
  const int64_t offset = (cache && !cache->empty()) ? (*cache)[0].self.length() : 0;
  const int64_t length = tokens.size(1);
  if (offset + length > c.max_target_positions) {
    throw InvalidInput(fmt::format("Whisper's decoder holds at most {} tokens; got {}", c.max_target_positions,
                                   offset + length));
  }
  StackStart start = stack_start(registry_, hooks::Stack::decoder, decoder_blocks_, tokens.size(0), device_, dtype_);
  at::Tensor x;
  if (start.resumed()) {
    x = start.residual;
    if (x.size(1) != length) {
      throw InvalidInput(fmt::format("start_at: the residual has {} positions but the tokens {}", x.size(1), length));
    }
  } else {
    auto ids = tokens.to(device_, at::kLong);
    if (ids.numel() > 0 && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size)) {
      throw InvalidInput(fmt::format("token ids must lie in [0, {})", c.vocab_size));
    }
    x = (*hook_tok_embed_)(enter_graph(at::embedding(token_embedding_, ids)));
    x = x + (*hook_decoder_pos_embed_)(decoder_positions_.narrow(0, offset, length).expand_as(x));
  }
  TransformerBlock::Inputs inputs;
  inputs.self_mask.causal = true;
  inputs.cross_source = &audio;
  x = run_blocks(decoder_blocks_, x, start.first_block, inputs, cache);
  if (call_stopped(registry_)) return x;
  return (*hook_logits_)(unembed(hooks::Stack::decoder, (*decoder_ln_final_)(x)));
}

at::Tensor HookedWhisper::tokens_or_prompt(const at::Tensor& tokens, int64_t batch) const {
  if (tokens.defined()) {
    if (tokens.dim() != 2) {
      throw InvalidInput(fmt::format("decoder tokens must be [batch, seq], got {}", c10::str(tokens.sizes())));
    }
    if (tokens.size(1) == 0) throw InvalidInput("decoder tokens are empty; give at least the start-of-transcript token");
    return tokens;
  }
  return batch_prompt({}, default_prompt(), batch);
}

at::Tensor HookedWhisper::run_impl(const ModelInputs& inputs, const RunOptions& options, hooks::RunContext& ctx) {
  if (inputs.token_mask.defined()) {
    throw InvalidInput("Whisper's decoder takes no token mask: give token rows of one length");
  }
  const int64_t batch = inputs.batch_size();
  const bool starts_in_decoder = ctx.start_in(hooks::Stack::decoder) != nullptr;
  at::Tensor audio;
  if (starts_in_decoder && !options.encoder_output.defined() && !inputs.features.defined()) {
    throw InvalidInput("start_at in the decoder needs the audio: features or encoder_output");
  }
  audio = encode_in_call(inputs.features, inputs.feature_lengths, options, batch, ctx);
  if (ctx.stopped()) return {};
  return decode_in_call(tokens_or_prompt(inputs.tokens, batch), audio, nullptr);
}

at::Tensor HookedWhisper::encode(const at::Tensor& mel, const at::Tensor& mel_lengths, const RunOptions& options) {
  ModelInputs inputs{mel, {}, mel_lengths, {}};
  Call call(*this, options, inputs);
  return call.result(encode_in_call(mel, mel_lengths, options, inputs.batch_size(), call.context()));
}

at::Tensor HookedWhisper::decode(const at::Tensor& tokens, const at::Tensor& audio, const RunOptions& options) {
  Call call(*this, options, ModelInputs{{}, tokens, {}, {}});
  return call.result(decode_in_call(tokens, audio.to(device_, dtype_), nullptr));
}

// Incremental decoding over fixed audio states with a KV cache.
class HookedWhisper::Session : public DecodeSession {
 public:
  Session(HookedWhisper& model, at::Tensor audio) : model_(model), audio_(std::move(audio)) {}
  at::Tensor step(const at::Tensor& tokens) override {
    return model_.decode_in_call(tokens.to(model_.device_), audio_, &cache_);
  }
  int64_t capacity(int64_t prompt_length) const override {
    return model_.config_.max_target_positions - prompt_length;
  }

 private:
  HookedWhisper& model_;
  at::Tensor audio_;
  std::vector<BlockCache> cache_;
};

std::vector<std::vector<int64_t>> HookedWhisper::generate(const ModelInputs& inputs, const GenerateOptions& generate,
                                                          const RunOptions& options) {
  if (options.stop_at) throw InvalidInput("generate does not take stop_at");
  Call call(*this, options, inputs);
  auto& ctx = call.context();
  if (ctx.start_in(hooks::Stack::decoder)) throw InvalidInput("generate resumes (start_at) only in the encoder");
  const int64_t batch = inputs.batch_size();
  at::Tensor prompt = generate.prompt.defined() ? batch_prompt(generate.prompt, {}, batch)
                      : inputs.tokens.defined() ? batch_prompt(inputs.tokens, {}, batch)
                                                : batch_prompt({}, default_prompt(), batch);
  c10::NoGradGuard no_grad;
  at::Tensor audio = encode_in_call(inputs.features, inputs.feature_lengths, options, batch, ctx);
  Session session(*this, audio);
  const DecodeRules rules = DecodeRules::resolve(generation_, generate, generation_.eos_token_ids.front());
  return greedy_decode(session, prompt, rules, config_.vocab_size, ctx.state());
}

ModelInputs HookedWhisper::prepare(const std::vector<at::Tensor>& waves, std::optional<int64_t> sampling_rate) const {
  auto clips = to_model_rate(waves, sampling_rate);
  const auto& o = extractor_.options();
  std::vector<int64_t> frames;
  for (const auto& clip : clips) {
    if (clip.numel() > o.n_samples) {
      log::warn(fmt::format("a clip of {:.1f} s is longer than Whisper's {:.0f} s window; only its first {:.0f} s are "
                            "used (long-form transcription is not supported yet)",
                            static_cast<double>(clip.numel()) / o.sampling_rate,
                            static_cast<double>(o.n_samples) / o.sampling_rate,
                            static_cast<double>(o.n_samples) / o.sampling_rate));
    }
    // HF's attention mask keeps every hop_length-th sample: ceil(samples / hop) real frames.
    const int64_t samples = std::min<int64_t>(clip.numel(), o.n_samples);
    frames.push_back(std::min<int64_t>((samples + o.hop_length - 1) / o.hop_length, extractor_.frames()));
  }
  auto features = extractor_(clips).input_features;
  ModelInputs inputs;
  inputs.features = features;
  inputs.feature_lengths = at::tensor(frames, at::kLong);
  inputs.tokens = batch_prompt({}, default_prompt(), static_cast<int64_t>(clips.size()));
  return inputs;
}

std::vector<int64_t> HookedWhisper::detect_language(const at::Tensor& mel, const at::Tensor& mel_lengths) {
  const auto& tok = tokenizer();
  const auto languages = tok.language_token_ids();
  if (languages.empty()) throw InvalidInput("the tokenizer has no language tokens to detect a language with");
  c10::NoGradGuard no_grad;
  auto audio = encode(mel, mel_lengths);
  auto start = at::full({mel.size(0), 1}, tok.sot(), at::kLong);
  auto logits = decode(start, audio).select(1, -1).to(at::kCPU, at::kFloat);
  auto language_logits = logits.index_select(-1, at::tensor(languages, at::kLong));
  auto best = language_logits.argmax(-1);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < best.size(0); ++i) out.push_back(languages[best[i].item<int64_t>()]);
  return out;
}

std::vector<std::vector<int64_t>> HookedWhisper::transcribe_ids(const std::vector<at::Tensor>& waves,
                                                                std::optional<int64_t> sampling_rate,
                                                                const WhisperTranscribeOptions& options) {
  ModelInputs inputs = prepare(waves, sampling_rate);
  GenerateOptions generate;
  generate.max_new_tokens = options.max_new_tokens;
  const bool detect = tokenizer().multilingual() && !options.language;
  if (!detect) {
    generate.prompt = at::tensor(tokenizer().sot_sequence(options.language, options.task, false), at::kLong);
    return this->generate(inputs, generate);
  }
  // Detected languages may differ between clips, and so do their prompts.
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < inputs.batch_size(); ++i) {
    ModelInputs one = inputs.select({i});
    const auto language = tokenizer().language_of(detect_language(one.features, one.feature_lengths).at(0));
    generate.prompt = at::tensor(tokenizer().sot_sequence(language, options.task, false), at::kLong);
    out.push_back(this->generate(one, generate).at(0));
  }
  return out;
}

std::vector<std::string> HookedWhisper::transcribe(const std::vector<at::Tensor>& waves,
                                                   std::optional<int64_t> sampling_rate,
                                                   const WhisperTranscribeOptions& options) {
  std::vector<std::string> texts;
  for (const auto& ids : transcribe_ids(waves, sampling_rate, options)) {
    texts.push_back(tokenizer().decode(ids, /*skip_special_tokens=*/true));
  }
  return texts;
}

std::vector<std::string> HookedWhisper::transcribe(const std::vector<at::Tensor>& waves,
                                                   std::optional<int64_t> sampling_rate) {
  return transcribe(waves, sampling_rate, WhisperTranscribeOptions{});
}

std::vector<StackInfo> HookedWhisper::stacks() const {
  return {
      {hooks::Stack::encoder, "encoder", config_.encoder_layers, config_.d_model, false, false, "encoder",
       "encoder.ln_post"},
      {hooks::Stack::decoder, "decoder", config_.decoder_layers, config_.d_model, true, true, "decoder",
       "decoder.ln_final"},
  };
}

const Norm* HookedWhisper::final_norm_layer(hooks::Stack stack) const {
  if (stack == hooks::Stack::encoder) return &encoder_->final_norm();
  if (stack == hooks::Stack::decoder) return decoder_ln_final_.get();
  this->stack(stack);  // throws naming the stacks
  return nullptr;
}

at::Tensor HookedWhisper::unembed(hooks::Stack stack, const at::Tensor& normed) const {
  if (stack != hooks::Stack::decoder) {
    this->stack(stack);
    throw InvalidInput("Whisper's encoder has no head of its own: read it through the decoder (the encoder lens: "
                       "run with start_at at the last encoder block's hook_resid_post)");
  }
  return at::linear(normed, unembedding_);
}

at::Tensor HookedWhisper::unembedding(hooks::Stack stack) const {
  if (stack != hooks::Stack::decoder) unembed(stack, at::Tensor());  // throws for stacks without a head
  return unembedding_;
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
