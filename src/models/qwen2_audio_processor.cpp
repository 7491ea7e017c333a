#include "speechlens/models/qwen2_audio_processor.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../io/json_util.h"
#include "speechlens/models/qwen2_audio.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

namespace {

int64_t required_token(const text::BpeTokenizer& tokenizer, const char* token) {
  auto id = tokenizer.token_to_id(token);
  if (!id) {
    throw InvalidInput(fmt::format("the tokenizer has no {} token; is it a Qwen2-Audio tokenizer?", token));
  }
  return *id;
}

size_t count_occurrences(std::string_view text, std::string_view needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

}  // namespace

Qwen2AudioProcessor::Qwen2AudioProcessor(text::BpeTokenizer tokenizer, audio::WhisperFeatureExtractor features)
    : tokenizer_(std::move(tokenizer)),
      features_(std::move(features)),
      audio_token_id_(required_token(tokenizer_, kAudioToken)),
      pad_token_id_(required_token(tokenizer_, "<|endoftext|>")) {
  required_token(tokenizer_, kAudioBosToken);
  required_token(tokenizer_, kAudioEosToken);
}

Qwen2AudioProcessor Qwen2AudioProcessor::from_dir(const std::filesystem::path& dir) {
  audio::WhisperFeatureOptions options;
  options.n_mels = 128;  // Qwen2-Audio's
  const auto config_file = dir / "preprocessor_config.json";
  if (std::filesystem::exists(config_file)) {
    options = audio::WhisperFeatureOptions::from_json(io::detail::read_json_file(config_file, false));
  }
  return {text::BpeTokenizer::from_dir(dir), audio::WhisperFeatureExtractor(options)};
}

std::string Qwen2AudioProcessor::chat_prompt(std::string_view prompt, int64_t audio_count, std::string_view system) {
  if (audio_count < 0) throw InvalidInput(fmt::format("audio_count must be >= 0, got {}", audio_count));
  std::string text = fmt::format("<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n", system);
  for (int64_t i = 1; i <= audio_count; ++i) {
    text += fmt::format("Audio {}: {}{}{}\n", i, kAudioBosToken, kAudioToken, kAudioEosToken);
  }
  text += fmt::format("{}<|im_end|>\n<|im_start|>assistant\n", prompt);
  return text;
}

std::string Qwen2AudioProcessor::expand_audio_tokens(std::string_view text, const std::vector<int64_t>& counts) {
  const std::string_view placeholder = kAudioToken;
  const size_t found = count_occurrences(text, placeholder);
  if (found != counts.size()) {
    throw InvalidInput(fmt::format("the text holds {} {} placeholders but {} audio clips were given", found,
                                   kAudioToken, counts.size()));
  }
  std::string out;
  size_t from = 0;
  for (int64_t count : counts) {
    const size_t at = text.find(placeholder, from);
    out.append(text.substr(from, at - from));
    for (int64_t i = 0; i < count; ++i) out.append(placeholder);
    from = at + placeholder.size();
  }
  out.append(text.substr(from));
  return out;
}

Qwen2AudioBatch Qwen2AudioProcessor::operator()(const std::vector<std::string>& texts,
                                                const std::vector<at::Tensor>& clips,
                                                PaddingSide padding_side) const {
  if (texts.empty()) throw InvalidInput("the processor needs at least one text");
  size_t placeholders = 0;
  for (const auto& text : texts) placeholders += count_occurrences(text, kAudioToken);
  if (placeholders != clips.size()) {
    throw InvalidInput(fmt::format("the texts hold {} {} placeholders but {} audio clips were given", placeholders,
                                   kAudioToken, clips.size()));
  }
  Qwen2AudioBatch batch;
  if (!clips.empty()) {
    auto features = features_(clips, audio::WhisperPadding::max_length, /*truncation=*/true);
    batch.input_features = features.input_features;
    batch.feature_attention_mask = features.attention_mask;
    batch.feature_lengths = features.attention_mask.sum(-1).to(at::kLong);
    for (int64_t i = 0; i < batch.feature_lengths.size(0); ++i) {
      batch.audio_token_counts.push_back(qwen2_audio_token_count(batch.feature_lengths[i].item<int64_t>()));
    }
  }

  std::vector<std::vector<int64_t>> ids;
  size_t next_clip = 0;
  for (const auto& text : texts) {
    const size_t here = count_occurrences(text, kAudioToken);
    std::vector<int64_t> counts(batch.audio_token_counts.begin() + next_clip,
                                batch.audio_token_counts.begin() + next_clip + here);
    next_clip += here;
    ids.push_back(tokenizer_.encode(expand_audio_tokens(text, counts)));
  }
  size_t longest = 0;
  for (const auto& row : ids) longest = std::max(longest, row.size());
  const int64_t rows = static_cast<int64_t>(ids.size());
  batch.input_ids = at::full({rows, static_cast<int64_t>(longest)}, pad_token_id_, at::kLong);
  batch.attention_mask = at::zeros({rows, static_cast<int64_t>(longest)}, at::kLong);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t length = static_cast<int64_t>(ids[r].size());
    const int64_t start = padding_side == PaddingSide::left ? static_cast<int64_t>(longest) - length : 0;
    if (length == 0) continue;
    batch.input_ids[r].narrow(0, start, length).copy_(at::tensor(ids[r], at::kLong));
    batch.attention_mask[r].narrow(0, start, length).fill_(1);
  }
  return batch;
}

}  // namespace speechlens::models
