#pragma once
// HookedHubert: HuBERT and wav2vec2 (HF HubertModel, HubertForCTC, Wav2Vec2Model,
// Wav2Vec2ForCTC checkpoints), natively, with a hook point at every activation.
//
//   waveform [B, samples] (normalised as preprocessor_config.json says)
//     -> conv feature encoder: conv{i} (+ GroupNorm on conv0 | LayerNorm on every conv) + act
//     -> feature projection: [LayerNorm] + Linear                         [B, T, D]
//     -> padded frames zeroed; + conv positional embedding
//     -> post-LN ("base", do_stable_layer_norm=false): LayerNorm, then post-norm blocks
//        stable (large / "lv60"):                      pre-norm blocks, then LayerNorm
//     -> CTC head lm_head (ForCTC checkpoints)                            [B, T, vocab]
//
// Hook points (stack "encoder" unless noted):
//   feature_extractor.hook_input            [B, samples]   normalised waveform (stack none)
//   feature_extractor.conv{i}.hook_out      [B, C_i, T_i]  after norm + activation (stack none:
//                                                          T_i is not the encoder's frame rate)
//   feature_projection.ln.hook_normalized   [B, T, C]      when the projection has a LayerNorm
//   feature_projection.hook_out             [B, T, D]      projected features, before padding is zeroed
//   encoder.hook_pos_conv                   [B, T, D]      the positional conv embedding
//   encoder.ln_pre.hook_normalized          [B, T, D]      post-LN variant: the norm before block 0
//   encoder.blocks.{i}.*                    DESIGN.md block names (TransformerBlock)
//   encoder.ln_final.hook_normalized        [B, T, D]      stable variant: the norm after the last block
//   ctc.hook_logits                         [B, T, vocab]  ForCTC checkpoints
// HF's output_hidden_states[0] is encoder.blocks.0.hook_resid_pre and hidden_states[i + 1] is
// encoder.blocks.{i}.hook_resid_post (before ln_final in the stable variant).
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "speechlens/audio/normalize.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/models/hooked_model.h"
#include "speechlens/models/layers/conv.h"
#include "speechlens/models/layers/transformer_block.h"
#include "speechlens/text/ctc_decoder.h"

namespace speechlens::models {

struct HubertConfig {
  std::string model_type = "hubert";  // "hubert" or "wav2vec2"
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-5;
  std::string feat_extract_norm = "group";  // "group": GroupNorm on conv0 only; "layer": LayerNorm on every conv
  std::string feat_extract_activation = "gelu";
  std::vector<int64_t> conv_dim{512, 512, 512, 512, 512, 512, 512};
  std::vector<int64_t> conv_stride{5, 2, 2, 2, 2, 2, 2};
  std::vector<int64_t> conv_kernel{10, 3, 3, 3, 3, 2, 2};
  bool conv_bias = false;
  bool feat_proj_layer_norm = true;  // HuBERT's flag; wav2vec2 always has the norm
  int64_t num_conv_pos_embeddings = 128;
  int64_t num_conv_pos_embedding_groups = 16;
  bool do_stable_layer_norm = false;
  int64_t vocab_size = 32;
  int64_t pad_token_id = 0;

  // Throws InvalidInput for inconsistent values and for the variants not implemented
  // (adapters, conv_pos_batch_norm), naming the key.
  static HubertConfig from_json(const nlohmann::json& config);
};

class HookedHubert : public HookedModel {
 public:
  HookedHubert(const io::Checkpoint& checkpoint, const LoadOptions& options = {});
  static std::unique_ptr<HookedHubert> from_pretrained(const std::filesystem::path& dir,
                                                       const LoadOptions& options = {});

  std::string family() const override { return config_.model_type; }
  nlohmann::json config_json() const override;
  const HubertConfig& config() const { return config_; }
  bool has_ctc_head() const { return lm_head_.has_value(); }
  // Whether transcribe() can run: a CTC head and a vocab.json next to the checkpoint.
  bool can_transcribe() const { return has_ctc_head() && ctc_decoder_.has_value(); }

  // The input normalisation of the checkpoint's preprocessor_config.json (defaults when absent).
  const audio::WaveformOptions& waveform_options() const { return waveform_options_; }

  // Encoder frames for a clip of `samples` samples (HF's _get_feat_extract_output_lengths);
  // 0 or less when the clip is shorter than the conv stack's receptive field.
  int64_t frames_for_samples(int64_t samples) const;
  at::Tensor frames_for_samples(const at::Tensor& sample_lengths) const;

  // Normalised waveform [B, samples] -> last hidden state [B, T, D]. sample_lengths [B] marks
  // the real samples: the frames after each item's end are masked out of attention (HF's
  // attention_mask) and zeroed before the positional conv, and hooks see the valid frames.
  at::Tensor encode(const at::Tensor& wave, const at::Tensor& sample_lengths = {}, const RunOptions& options = {});
  // The CTC head on hidden states [B, T, D], with its hook (throws for a checkpoint without one).
  at::Tensor ctc_logits(const at::Tensor& hidden) const;

  // Greedy CTC transcription of raw clips (normalised here). Each clip is decoded over its own
  // frames; the padded batch carries an attention mask only when the preprocessor asks for one,
  // as HF's processor does.
  std::vector<std::string> transcribe(const std::vector<at::Tensor>& waves, bool skip_special_tokens);
  std::vector<std::string> transcribe(const std::vector<at::Tensor>& waves,
                                      std::optional<int64_t> sampling_rate = std::nullopt) override;
  const text::CtcDecoder& ctc_decoder() const;

  // Clips -> normalised, right-padded waveforms [B, samples] with feature_lengths = sample counts.
  ModelInputs prepare(const std::vector<at::Tensor>& waves,
                      std::optional<int64_t> sampling_rate = std::nullopt) const override;
  // Inputs longer than this are refused with a clear message (attention memory grows with the
  // square of the length); default 300 s.
  void set_max_input_seconds(double seconds);

  std::vector<StackInfo> stacks() const override;
  const Norm* final_norm_layer(hooks::Stack stack) const override;
  at::Tensor unembed(hooks::Stack stack, const at::Tensor& normed) const override;
  at::Tensor unembedding(hooks::Stack stack) const override;
  const std::vector<std::unique_ptr<TransformerBlock>>& encoder_blocks() const { return blocks_; }

 protected:
  void visit(const TensorVisitor& fn) override;
  at::Tensor run_impl(const ModelInputs& inputs, const RunOptions& options, hooks::RunContext& ctx) override;

 private:
  at::Tensor encode_in_call(const at::Tensor& wave, const at::Tensor& sample_lengths, int64_t batch,
                            hooks::RunContext& ctx);
  // [B] sample counts -> [B] lengths after the first `layers` convolutions.
  at::Tensor conv_lengths(const at::Tensor& sample_lengths, size_t layers) const;
  struct ConvLayer {
    Conv1d conv;
    std::optional<ChannelNorm> norm;
    hooks::HookPoint* hook_out = nullptr;
  };
  // [B] sample counts -> [B] frame counts, validated against the batch.
  at::Tensor valid_frames(const at::Tensor& sample_lengths, int64_t batch, int64_t samples) const;

  HubertConfig config_;
  Activation conv_activation_;
  audio::WaveformOptions waveform_options_;
  std::optional<text::CtcDecoder> ctc_decoder_;
  // In forward order (hook points are created in this order).
  hooks::HookPoint* hook_input_ = nullptr;
  std::vector<ConvLayer> conv_layers_;
  std::unique_ptr<Norm> projection_norm_;
  Linear projection_;
  hooks::HookPoint* hook_projection_out_ = nullptr;
  ConvPositionalEmbedding pos_conv_;
  hooks::HookPoint* hook_pos_conv_ = nullptr;
  std::unique_ptr<Norm> encoder_norm_;  // ln_pre (post-LN) or ln_final (stable)
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  std::optional<Linear> lm_head_;
  hooks::HookPoint* hook_logits_ = nullptr;
  int64_t max_input_samples_ = 300 * 16000;
};

}  // namespace speechlens::models
