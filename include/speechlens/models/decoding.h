#pragma once
// Token-by-token decoding shared by every model that generates text (Whisper's decoder,
// Qwen2-Audio's language model): the settings a checkpoint gives (generation_config.json, with
// config.json as the fallback), the options of one call, and the greedy loop with a KV cache.
// A model provides a DecodeSession (its incremental forward); the loop is written once.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

namespace speechlens::io {
class Checkpoint;
}
namespace speechlens::hooks {
struct RunState;
}

namespace speechlens::models {

// What a checkpoint says about generation. Each key is read from generation_config.json when
// it has it, else from config.json (older checkpoints keep them there), as HF generate does.
struct GenerationConfig {
  int64_t decoder_start_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;
  std::vector<int64_t> suppress_tokens;
  std::vector<int64_t> begin_suppress_tokens;
  // generation_config.json as read (null when absent): model-specific keys such as Whisper's
  // alignment_heads, lang_to_id, task_to_id, no_timestamps_token_id.
  nlohmann::json generation_json;

  static GenerationConfig from_checkpoint(const io::Checkpoint& checkpoint);
};

// One generate call. Unset fields take the checkpoint's settings.
struct GenerateOptions {
  at::Tensor prompt;                 // [B, S] (or [S], repeated over the batch); empty: the model's default
  int64_t max_new_tokens = 0;        // 0: as many as the model's context allows
  bool apply_suppress_tokens = true;
  std::optional<std::vector<int64_t>> suppress_tokens;
  std::optional<std::vector<int64_t>> begin_suppress_tokens;
  std::optional<std::vector<int64_t>> eos_token_ids;
};

// A model's incremental forward: each step takes the new tokens [B, n] (the prompt at step 0,
// one token after) and returns their logits [B, n, vocab], keeping its own KV cache.
class DecodeSession {
 public:
  virtual ~DecodeSession() = default;
  virtual at::Tensor step(const at::Tensor& tokens) = 0;
  // Tokens the session can still take (the context left after the prompt).
  virtual int64_t capacity(int64_t prompt_length) const = 0;
};

// The rules of the greedy loop, resolved from GenerationConfig and GenerateOptions.
struct DecodeRules {
  std::vector<int64_t> eos_token_ids;
  int64_t filler_token_id = 0;         // what finished items keep decoding (dropped)
  std::vector<int64_t> suppress_tokens;
  std::vector<int64_t> begin_suppress_tokens;  // at the first generated token only
  int64_t max_new_tokens = 0;

  static DecodeRules resolve(const GenerationConfig& config, const GenerateOptions& options, int64_t filler);
};

// Greedy decoding: argmax per step after suppression, until every item has produced an end
// token or max_new_tokens. Sets run.decode_step for hooks (0 = the prompt pass). Returns the
// generated ids per item, without the prompt and the end token.
std::vector<std::vector<int64_t>> greedy_decode(DecodeSession& session, const at::Tensor& prompt,
                                                const DecodeRules& rules, int64_t vocab_size, hooks::RunState& run);

// The prompt as a [B, S] int64 tensor: `prompt` ([S] is repeated over `batch`), or `fallback`
// repeated over the batch when it is empty.
at::Tensor batch_prompt(const at::Tensor& prompt, const std::vector<int64_t>& fallback, int64_t batch);

}  // namespace speechlens::models
