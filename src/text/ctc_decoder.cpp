#include "speechlens/text/ctc_decoder.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

#include "speechlens/util/error.h"

namespace speechlens::text {

namespace {

using nlohmann::json;

// A token in tokenizer_config.json is a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  return std::nullopt;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// HF's PreTrainedTokenizerBase.clean_up_tokenization.
std::string clean_up_tokenization(std::string text) {
  for (auto [from, to] : {std::pair{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                          {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}}) {
    text = replace_all(std::move(text), from, to);
  }
  return text;
}

// Python's str.strip(): Unicode whitespace; the ASCII subset covers every CTC vocabulary we
// know of (the delimiter becomes a plain space).
std::string strip(const std::string& text) {
  auto is_space = [](unsigned char c) { return std::isspace(c) != 0; };
  auto begin = std::find_if_not(text.begin(), text.end(), is_space);
  auto end = std::find_if_not(text.rbegin(), text.rend(), is_space).base();
  return begin < end ? std::string(begin, end) : std::string();
}

}  // namespace

CtcVocabOptions CtcVocabOptions::from_json(const json& config, const json& special_map) {
  CtcVocabOptions o;
  std::vector<std::string> special;
  for (const json* source : {&special_map, &config}) {
    if (!source->is_object()) continue;
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      auto it = source->find(key);
      if (it == source->end()) continue;
      if (auto text = token_text(*it)) {
        if (std::string(key) == "pad_token") o.pad_token = *text;
        special.push_back(*text);
      }
    }
  }
  if (config.is_object()) {
    if (auto it = config.find("word_delimiter_token"); it != config.end()) {
      if (auto text = token_text(*it)) o.word_delimiter_token = *text;
    }
    if (auto it = config.find("replace_word_delimiter_char"); it != config.end() && it->is_string()) {
      o.replace_word_delimiter_char = it->get<std::string>();
    }
    if (auto it = config.find("do_lower_case"); it != config.end() && it->is_boolean()) {
      o.do_lower_case = it->get<bool>();
    }
    if (auto it = config.find("clean_up_tokenization_spaces"); it != config.end() && it->is_boolean()) {
      o.clean_up_tokenization_spaces = it->get<bool>();
    }
  }
  if (!special.empty()) o.special_tokens = std::move(special);
  return o;
}

CtcDecoder::CtcDecoder(const json& vocab, CtcVocabOptions options) : options_(std::move(options)) {
  if (!vocab.is_object() || vocab.empty()) {
    throw InvalidInput("vocab.json must be a non-empty object mapping tokens to ids");
  }
  for (const auto& [token, id] : vocab.items()) {
    if (id.is_object()) {
      throw InvalidInput(fmt::format(
          "vocab.json is a multi-language vocabulary (key '{}' holds a nested object); pick one "
          "language's vocabulary and save it as a flat vocab.json",
          token));
    }
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 10'000'000) {
      throw InvalidInput(fmt::format("vocab.json: token '{}' has id {}, expected a non-negative integer", token,
                                     id.dump()));
    }
    const auto index = id.get<int64_t>();
    if (index >= static_cast<int64_t>(tokens_.size())) tokens_.resize(index + 1);
    tokens_[index] = token;
    ids_[token] = index;
  }
  auto blank = token_to_id(options_.pad_token);
  if (!blank) {
    throw InvalidInput(fmt::format("vocab.json has no pad token '{}', which CTC decoding uses as the blank",
                                   options_.pad_token));
  }
  blank_id_ = *blank;
}

const std::string& CtcDecoder::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw InvalidInput(fmt::format("CTC id {} is outside the vocabulary [0, {})", id, vocab_size()));
  }
  return tokens_[id];
}

std::optional<int64_t> CtcDecoder::token_to_id(const std::string& token) const {
  auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::string CtcDecoder::decode(const std::vector<int64_t>& frame_ids, bool skip_special_tokens) const {
  auto is_skipped = [&](const std::string& token) {
    return skip_special_tokens && token != options_.word_delimiter_token &&
           std::find(options_.special_tokens.begin(), options_.special_tokens.end(), token) !=
               options_.special_tokens.end();
  };
  std::string text;
  const std::string* previous = nullptr;
  for (int64_t id : frame_ids) {
    const std::string& token = id_to_token(id);
    if (is_skipped(token)) continue;
    if (previous && *previous == token) continue;  // a run of one token is one character
    previous = &token;
    if (token == options_.pad_token) continue;
    text += token == options_.word_delimiter_token ? options_.replace_word_delimiter_char : token;
  }
  text = strip(text);
  if (options_.do_lower_case) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  return options_.clean_up_tokenization_spaces ? clean_up_tokenization(std::move(text)) : text;
}

std::vector<std::vector<int64_t>> greedy_ids(const at::Tensor& logits, const at::Tensor& lengths) {
  if (logits.dim() != 3) {
    throw InvalidInput(fmt::format("CTC logits must be [batch, frames, vocab], got {}", c10::str(logits.sizes())));
  }
  const int64_t batch = logits.size(0), frames = logits.size(1);
  if (lengths.defined() && (lengths.dim() != 1 || lengths.size(0) != batch)) {
    throw InvalidInput(fmt::format("CTC lengths must be [batch={}], got {}", batch, c10::str(lengths.sizes())));
  }
  auto best = logits.argmax(-1).to(at::kCPU, at::kLong).contiguous();
  const int64_t* rows = best.data_ptr<int64_t>();
  auto valid = lengths.defined() ? lengths.to(at::kCPU, at::kLong).contiguous() : at::full({batch}, frames, at::kLong);
  auto valid_acc = valid.accessor<int64_t, 1>();
  std::vector<std::vector<int64_t>> out(batch);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = std::clamp<int64_t>(valid_acc[b], 0, frames);
    out[b].assign(rows + b * frames, rows + b * frames + n);
  }
  return out;
}

}  // namespace speechlens::text
