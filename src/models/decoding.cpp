#include "speechlens/models/decoding.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "config_json.h"
#include "speechlens/hooks/hook_point.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

GenerationConfig GenerationConfig::from_checkpoint(const io::Checkpoint& checkpoint) {
  GenerationConfig g;
  g.generation_json = checkpoint.read_json("generation_config.json");
  const nlohmann::json& config = checkpoint.config();
  const bool has_generation = g.generation_json.is_object();
  // generation_config.json wins where it has the key (HF generate); config.json otherwise.
  auto source = [&](const char* key) -> const nlohmann::json& {
    if (has_generation && g.generation_json.contains(key) && !g.generation_json.at(key).is_null()) {
      return g.generation_json;
    }
    return config;
  };
  auto file = [&](const char* key) {
    return &source(key) == &config ? std::string("config.json") : std::string("generation_config.json");
  };
  auto ids = [&](const char* key) {
    try {
      return detail::config_ids(source(key), key);
    } catch (const InvalidInput&) {
      throw InvalidInput(fmt::format("{}: '{}' must be a token id or a list of token ids", file(key), key));
    }
  };
  auto first = [&](const char* key) {
    auto v = ids(key);
    return v.empty() ? int64_t{-1} : v.front();
  };
  g.decoder_start_token_id = first("decoder_start_token_id");
  g.eos_token_ids = ids("eos_token_id");
  g.pad_token_id = first("pad_token_id");
  g.suppress_tokens = ids("suppress_tokens");
  g.begin_suppress_tokens = ids("begin_suppress_tokens");
  return g;
}

DecodeRules DecodeRules::resolve(const GenerationConfig& config, const GenerateOptions& options, int64_t filler) {
  DecodeRules rules;
  rules.eos_token_ids = options.eos_token_ids ? *options.eos_token_ids : config.eos_token_ids;
  rules.filler_token_id = filler;
  if (options.apply_suppress_tokens) {
    rules.suppress_tokens = options.suppress_tokens ? *options.suppress_tokens : config.suppress_tokens;
    rules.begin_suppress_tokens =
        options.begin_suppress_tokens ? *options.begin_suppress_tokens : config.begin_suppress_tokens;
  }
  if (options.max_new_tokens < 0) {
    throw InvalidInput(fmt::format("max_new_tokens must be >= 0 (0: up to the context), got {}", options.max_new_tokens));
  }
  rules.max_new_tokens = options.max_new_tokens;
  return rules;
}

at::Tensor batch_prompt(const at::Tensor& prompt, const std::vector<int64_t>& fallback, int64_t batch) {
  at::Tensor ids;
  if (!prompt.defined() || prompt.numel() == 0) {
    if (fallback.empty()) throw InvalidInput("generation needs a prompt (no default prompt is known for this model)");
    ids = at::tensor(fallback, at::kLong).unsqueeze(0);
  } else {
    if (at::isFloatingType(prompt.scalar_type()) || at::isComplexType(prompt.scalar_type()) ||
        prompt.scalar_type() == at::kBool) {
      throw InvalidInput(fmt::format("prompt token ids must be integers, got {}", c10::toString(prompt.scalar_type())));
    }
    if (prompt.dim() < 1 || prompt.dim() > 2) {
      throw InvalidInput(fmt::format("a prompt is [seq] or [batch, seq] token ids, got {}", c10::str(prompt.sizes())));
    }
    ids = prompt.to(at::kCPU, at::kLong);
    if (ids.dim() == 1) ids = ids.unsqueeze(0);
  }
  if (ids.size(0) == batch) return ids;
  if (ids.size(0) == 1) return ids.repeat({batch, 1});
  throw InvalidInput(fmt::format("the prompt has {} rows for a batch of {}", ids.size(0), batch));
}

std::vector<std::vector<int64_t>> greedy_decode(DecodeSession& session, const at::Tensor& prompt,
                                                const DecodeRules& rules, int64_t vocab_size, hooks::RunState& run) {
  const int64_t batch = prompt.size(0);
  const int64_t capacity = session.capacity(prompt.size(1));
  if (capacity < 1) {
    throw InvalidInput(fmt::format("the prompt of {} tokens leaves no room to generate in the model's context",
                                   prompt.size(1)));
  }
  const int64_t max_new = rules.max_new_tokens > 0 ? std::min(rules.max_new_tokens, capacity) : capacity;
  auto suppress_mask = [&](const std::vector<int64_t>& ids) {
    auto mask = at::zeros({vocab_size}, at::kFloat);
    auto m = mask.accessor<float, 1>();
    for (int64_t id : ids) {
      if (id >= 0 && id < vocab_size) m[id] = -std::numeric_limits<float>::infinity();
    }
    return mask;
  };
  at::Tensor always, at_begin;  // built on the logits' device at the first step
  std::vector<std::vector<int64_t>> generated(batch);
  std::vector<bool> done(batch, false);
  auto is_eos = [&](int64_t id) {
    return std::find(rules.eos_token_ids.begin(), rules.eos_token_ids.end(), id) != rules.eos_token_ids.end();
  };
  struct StepReset {
    hooks::RunState& state;
    ~StepReset() { state.decode_step = -1; }
  } reset{run};
  at::Tensor input = prompt;
  for (int64_t step = 0; step < max_new; ++step) {
    run.decode_step = step;
    auto logits = session.step(input).select(1, -1).to(at::kFloat);
    if (!always.defined()) {
      always = suppress_mask(rules.suppress_tokens).to(logits.device());
      at_begin = suppress_mask(rules.begin_suppress_tokens).to(logits.device());
    }
    logits = logits + always;
    if (step == 0) logits = logits + at_begin;
    auto next = logits.argmax(-1).to(at::kCPU);
    auto acc = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) {
        acc[b] = rules.filler_token_id;
        continue;
      }
      if (is_eos(acc[b])) {
        done[b] = true;
        acc[b] = rules.filler_token_id;
      } else {
        generated[b].push_back(acc[b]);
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    input = next.unsqueeze(1);
  }
  return generated;
}

}  // namespace speechlens::models
