#include "speechlens/models/whisper_pipeline.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "speechlens/util/error.h"

namespace speechlens::models {

namespace {

std::vector<int64_t> id_list(const nlohmann::json& config, const char* key, const std::string& file) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return {};
  try {
    return it->get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(fmt::format("{}: '{}' must be a list of token ids: {}", file, key, e.what()));
  }
}

}  // namespace

WhisperGenerationSettings WhisperGenerationSettings::from_checkpoint(const io::Checkpoint& checkpoint) {
  // transformers moves generation settings out of config.json on save; OpenAI's HF uploads
  // keep a copy in both. generation_config.json wins where it has the key, as in HF generate.
  const nlohmann::json generation = checkpoint.read_json("generation_config.json");
  auto pick = [&](const char* key) {
    if (generation.is_object() && generation.contains(key)) return id_list(generation, key, "generation_config.json");
    return id_list(checkpoint.config(), key, "config.json");
  };
  WhisperGenerationSettings settings;
  settings.suppress_tokens = pick("suppress_tokens");
  settings.begin_suppress_tokens = pick("begin_suppress_tokens");
  return settings;
}

WhisperPipeline::WhisperPipeline(HookedWhisper& model, const std::filesystem::path& dir)
    : WhisperPipeline(model, [&] {
        const auto checkpoint = io::Checkpoint::open(dir);
        const nlohmann::json preprocessor = checkpoint.read_json("preprocessor_config.json");
        return std::make_tuple(
            preprocessor.is_object() ? audio::WhisperFeatureExtractor(preprocessor)
                                     : audio::WhisperFeatureExtractor(audio::WhisperFeatureOptions{
                                           .n_mels = static_cast<int>(model.config().n_mels)}),
            text::WhisperTokenizer::from_dir(dir), WhisperGenerationSettings::from_checkpoint(checkpoint));
      }()) {}

// Unpacks the tuple the directory constructor builds (members need it in one expression).
WhisperPipeline::WhisperPipeline(
    HookedWhisper& model,
    std::tuple<audio::WhisperFeatureExtractor, text::WhisperTokenizer, WhisperGenerationSettings> parts)
    : WhisperPipeline(model, std::move(std::get<0>(parts)), std::move(std::get<1>(parts)),
                      std::move(std::get<2>(parts))) {}

WhisperPipeline::WhisperPipeline(HookedWhisper& model, audio::WhisperFeatureExtractor extractor,
                                 text::WhisperTokenizer tokenizer, WhisperGenerationSettings settings)
    : model_(model), extractor_(std::move(extractor)), tokenizer_(std::move(tokenizer)), settings_(std::move(settings)) {
  if (extractor_.options().n_mels != model_.config().n_mels) {
    throw InvalidInput(fmt::format("the feature extractor makes {} mel bins but the model takes {}",
                                   extractor_.options().n_mels, model_.config().n_mels));
  }
  if (tokenizer_.vocab_size() > model_.config().vocab_size) {
    throw InvalidInput(fmt::format("the tokenizer spans {} ids but the model's vocabulary has {}; they do not belong "
                                   "together",
                                   tokenizer_.vocab_size(), model_.config().vocab_size));
  }
}

WhisperFeaturesBatch WhisperPipeline::features(const at::Tensor& wave) const {
  if (!wave.defined() || wave.dim() < 1 || wave.dim() > 2 || wave.size(-1) == 0) {
    throw InvalidInput(fmt::format("expected a waveform [samples] or [batch, samples] at {} Hz, got {}",
                                   extractor_.options().sampling_rate,
                                   wave.defined() ? c10::str(wave.sizes()) : std::string("an undefined tensor")));
  }
  const at::Tensor batch = wave.dim() == 1 ? wave.unsqueeze(0) : wave;
  WhisperFeaturesBatch out;
  out.mel = extractor_(batch);
  // HF's attention mask keeps every hop_length-th sample: ceil(samples / hop) real frames.
  const int64_t hop = extractor_.options().hop_length;
  const int64_t real = std::min<int64_t>((batch.size(1) + hop - 1) / hop, out.mel.size(2));
  out.mel_lengths = at::full({batch.size(0)}, real, at::kLong);
  return out;
}

int64_t WhisperPipeline::detect_language(const at::Tensor& mel) {
  // As OpenAI's detect_language: one decoder step from <|startoftranscript|>, the most likely
  // language token wins.
  const auto languages = tokenizer_.language_token_ids();
  if (languages.empty()) throw InvalidInput("the tokenizer has no language tokens to detect a language with");
  auto audio = model_.encode(mel);
  auto start = at::full({mel.size(0), 1}, tokenizer_.sot(), at::kLong);
  auto logits = model_.decode(start, audio).select(1, -1).to(at::kCPU, at::kFloat);
  auto language_logits = logits.index_select(-1, at::tensor(languages, at::kLong));
  return languages[language_logits[0].argmax().item<int64_t>()];
}

std::vector<int64_t> WhisperPipeline::prompt(const at::Tensor& mel, const TranscribeOptions& options) {
  if (!tokenizer_.multilingual() || options.language) {
    return tokenizer_.sot_sequence(options.language, options.task, /*timestamps=*/false);
  }
  const auto language = tokenizer_.language_of(detect_language(mel));
  return tokenizer_.sot_sequence(language, options.task, /*timestamps=*/false);
}

std::vector<std::vector<int64_t>> WhisperPipeline::generate(const at::Tensor& wave, const TranscribeOptions& options) {
  const auto batch = features(wave);
  GreedyOptions greedy;
  greedy.max_new_tokens = options.max_new_tokens;
  greedy.suppress_tokens = settings_.suppress_tokens;
  greedy.begin_suppress_tokens = settings_.begin_suppress_tokens;
  const bool per_clip = tokenizer_.multilingual() && !options.language && batch.mel.size(0) > 1;
  if (!per_clip) {
    greedy.prompt = prompt(batch.mel, options);
    return model_.generate_greedy(batch.mel, greedy, batch.mel_lengths);
  }
  // Detected languages may differ between clips, and so do their prompts.
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < batch.mel.size(0); ++i) {
    auto mel = batch.mel.narrow(0, i, 1);
    greedy.prompt = prompt(mel, options);
    out.push_back(model_.generate_greedy(mel, greedy, batch.mel_lengths.narrow(0, i, 1)).at(0));
  }
  return out;
}

std::vector<std::string> WhisperPipeline::transcribe(const at::Tensor& wave, const TranscribeOptions& options) {
  std::vector<std::string> texts;
  for (const auto& ids : generate(wave, options)) texts.push_back(tokenizer_.decode(ids, /*skip_special_tokens=*/true));
  return texts;
}

}  // namespace speechlens::models
