#pragma once
// HookedQwen2Audio: Qwen2-Audio (HF Qwen2AudioForConditionalGeneration), natively, hooked from
// the log-mel to the generated answer.
//
//   log-mel [B, n_mels, 2 * max_source_positions] + valid mel frames
//     -> audio tower (Whisper encoder, key-padding mask, average pool by 2, ln_post)   [B, T/4, D_audio]
//     -> multi_modal_projector (linear)                                            [B, T/4, D_lm]
//   input ids [B, S] with <|AUDIO|> expanded to one token per audio frame
//     -> token embeddings, audio features written at the <|AUDIO|> positions
//     -> Qwen2 language model -> logits [B, S, vocab]
//
// Hook names: audio_encoder.* (WhisperEncoder's, with audio_encoder.hook_pooled),
// projector.hook_out, lm.hook_embed (the merged embeddings), lm.blocks.{i}.* (attn.hook_rot_q /
// hook_rot_k after RoPE), lm.ln_final.hook_normalized, hook_logits.
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "speechlens/audio/log_mel.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/models/hooked_model.h"
#include "speechlens/models/layers/module.h"
#include "speechlens/models/qwen2.h"
#include "speechlens/models/whisper.h"

namespace speechlens::models {

struct Qwen2AudioConfig {
  WhisperEncoderConfig audio;  // average_pool = true
  Qwen2Config text;
  int64_t audio_token_id = 151646;
  // Generation stops at any of these: generation_config.json's eos_token_id, else the text
  // config's.
  std::vector<int64_t> eos_token_ids;

  // config.json (and generation_config.json, null when absent) of a Qwen2-Audio checkpoint;
  // HF's defaults fill the keys the released configs leave out.
  static Qwen2AudioConfig from_json(const nlohmann::json& config, const nlohmann::json& generation_config);
  // Mel frames the audio tower takes (HF pads every clip to exactly this: 30 s).
  int64_t mel_frames() const { return 2 * audio.max_source_positions; }
};

// Audio tokens HF's processor and model give a clip of `mel_frames` valid log-mel frames:
// conv2 halves (rounding up), the average pool halves again (rounding down).
int64_t qwen2_audio_token_count(int64_t mel_frames);

// The audio tower's output, projected into the language model's space.
struct Qwen2AudioEncoding {
  at::Tensor features;      // [B, T/4, D_lm]; only the first token_counts[b] rows of item b are used
  at::Tensor token_counts;  // [B] int64 on CPU: audio tokens per clip
};

class Qwen2AudioProcessor;

class HookedQwen2Audio : public HookedModel {
 public:
  HookedQwen2Audio(const io::Checkpoint& checkpoint, const LoadOptions& options = {});
  static std::unique_ptr<HookedQwen2Audio> from_pretrained(const std::filesystem::path& dir,
                                                           const LoadOptions& options = {});

  std::string family() const override { return "qwen2_audio"; }
  nlohmann::json config_json() const override;
  const Qwen2AudioConfig& config() const { return config_; }
  const GenerationConfig& generation_config() const { return generation_; }
  // The checkpoint's processor (tokenizer + feature extractor), read on first use; throws
  // IoError when the folder has no tokenizer files.
  const Qwen2AudioProcessor& processor() const;
  bool has_processor() const;

  // log-mel [B, n_mels, mel_frames()] and valid mel frames per clip [B] (HF's
  // feature_attention_mask.sum(-1); undefined: all frames) -> projected audio features. The
  // audio tower masks padded frames as keys, exactly as HF does.
  Qwen2AudioEncoding encode_audio(const at::Tensor& mel, const at::Tensor& mel_lengths = {},
                                  const RunOptions& options = {});
  // Token embeddings with audio.features written, clip by clip in batch order, at the
  // <|AUDIO|> positions of input_ids [B, S]. Throws InvalidInput when the number of <|AUDIO|>
  // tokens differs from the audio tokens the clips give (expand the prompt with
  // Qwen2AudioProcessor). Without audio, the ids must hold no <|AUDIO|> token.
  at::Tensor embed(const at::Tensor& input_ids, const Qwen2AudioEncoding* audio) const;

  // features: log-mel; tokens: input ids with <|AUDIO|> expanded; feature_lengths: valid mel
  // frames; token_mask: HF's attention_mask. Features may be undefined for a text-only forward.
  // generate: greedy decoding with a KV cache, as HF generate(do_sample=False): the prompt
  // (audio merged) runs once, then one token per step.
  std::vector<std::vector<int64_t>> generate(const ModelInputs& inputs, const GenerateOptions& generate = {},
                                             const RunOptions& options = {}) override;
  // Clips -> log-mel padded to 30 s with feature_lengths, and (when the folder has a tokenizer)
  // the base prompt <|audio_bos|><|AUDIO|>...<|audio_eos|> per clip, left-padded, as tokens and
  // token_mask.
  ModelInputs prepare(const std::vector<at::Tensor>& waves,
                      std::optional<int64_t> sampling_rate = std::nullopt) const override;

  // Which sequence positions hold audio (the <|AUDIO|> tokens) and which hold text (every other
  // real token, <|audio_bos|> / <|audio_eos|> and the chat markup included): [B, S] bool.
  at::Tensor audio_positions(const at::Tensor& input_ids) const;
  at::Tensor text_positions(const at::Tensor& input_ids, const at::Tensor& token_mask = {}) const;
  // Positions [B, S] that HF generate gives a (possibly left-padded) batch: cumsum(mask) - 1,
  // 0 on padding.
  static at::Tensor positions_from_mask(const at::Tensor& token_mask);

  std::vector<StackInfo> stacks() const override;
  // The audio stack's read-out pools frames by 2 before ln_post (as the tower does).
  at::Tensor final_norm(hooks::Stack stack, const at::Tensor& residual) const override;
  const Norm* final_norm_layer(hooks::Stack stack) const override;
  at::Tensor unembed(hooks::Stack stack, const at::Tensor& normed) const override;
  at::Tensor unembedding(hooks::Stack stack) const override;
  const std::vector<std::unique_ptr<TransformerBlock>>& lm_blocks() const { return lm_->blocks(); }
  const std::vector<std::unique_ptr<TransformerBlock>>& audio_blocks() const { return audio_encoder_->blocks(); }

 protected:
  void visit(const TensorVisitor& fn) override;
  at::Tensor run_impl(const ModelInputs& inputs, const RunOptions& options, hooks::RunContext& ctx) override;

 private:
  class Session;
  Qwen2AudioEncoding encode_in_call(const at::Tensor& mel, const at::Tensor& mel_lengths, const RunOptions& options,
                                    int64_t batch, hooks::RunContext& ctx);
  // The language model on merged embeddings [B, S, D] -> logits [B, S, vocab]. token_mask
  // [B, S_total] marks real tokens over the cached and new ones (undefined: all real).
  at::Tensor run_lm(const at::Tensor& embeddings, const at::Tensor& token_mask, std::vector<BlockCache>* cache,
                    int64_t batch, int64_t length);
  void set_token_lengths(hooks::RunState& run, const at::Tensor& token_mask, int64_t batch, int64_t length) const;

  Qwen2AudioConfig config_;
  GenerationConfig generation_;
  audio::WhisperFeatureExtractor extractor_;
  SideFile<Qwen2AudioProcessor> processor_;
  std::unique_ptr<WhisperEncoder> audio_encoder_;
  Linear projector_;
  hooks::HookPoint* hook_projector_out_;
  std::unique_ptr<Qwen2LanguageModel> lm_;
  hooks::HookPoint* hook_logits_;
};

}  // namespace speechlens::models
