#include "speechlens/models/hubert.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config_json.h"
#include "speechlens/models/registry.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

using detail::config_value;

namespace {

void require_positive(const char* key, int64_t value) {
  if (value <= 0) throw InvalidInput(fmt::format("config.json: '{}' must be positive, got {}", key, value));
}

void reject_unsupported(const nlohmann::json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null() || (it->is_boolean() && !it->get<bool>())) return;
  throw InvalidInput(fmt::format("config.json: '{}' = {} ({}) is not supported by HookedHubert", key, it->dump(),
                                 what));
}

BlockConfig hubert_block(const HubertConfig& c) {
  BlockConfig block;
  block.attention.d_model = c.hidden_size;
  block.attention.n_heads = c.num_attention_heads;
  block.mlp.d_model = c.hidden_size;
  block.mlp.d_mlp = c.intermediate_size;
  block.mlp.activation = activation_from_name(c.hidden_act);
  block.mlp.in_name = "intermediate_dense";
  block.mlp.out_name = "output_dense";
  block.mlp_name = "feed_forward";
  block.norm = NormKind::layer_norm;
  block.norm_eps = c.layer_norm_eps;
  block.pre_norm = c.do_stable_layer_norm;
  block.self_attn_name = "attention";
  block.ln1_name = "layer_norm";
  block.ln2_name = "final_layer_norm";
  return block;
}

}  // namespace

HubertConfig HubertConfig::from_json(const nlohmann::json& j) {
  HubertConfig c;
  c.model_type = config_value<std::string>(j, "model_type", c.model_type);
  if (c.model_type != "hubert" && c.model_type != "wav2vec2") {
    throw InvalidInput(fmt::format("config.json: model_type '{}' is not a HuBERT / wav2vec2 checkpoint",
                                   c.model_type));
  }
  c.hidden_size = config_value<int64_t>(j, "hidden_size", c.hidden_size);
  c.num_hidden_layers = config_value<int64_t>(j, "num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = config_value<int64_t>(j, "num_attention_heads", c.num_attention_heads);
  c.intermediate_size = config_value<int64_t>(j, "intermediate_size", c.intermediate_size);
  c.hidden_act = config_value<std::string>(j, "hidden_act", c.hidden_act);
  c.layer_norm_eps = config_value<double>(j, "layer_norm_eps", c.layer_norm_eps);
  c.feat_extract_norm = config_value<std::string>(j, "feat_extract_norm", c.feat_extract_norm);
  c.feat_extract_activation = config_value<std::string>(j, "feat_extract_activation", c.feat_extract_activation);
  c.conv_dim = config_value<std::vector<int64_t>>(j, "conv_dim", c.conv_dim);
  c.conv_stride = config_value<std::vector<int64_t>>(j, "conv_stride", c.conv_stride);
  c.conv_kernel = config_value<std::vector<int64_t>>(j, "conv_kernel", c.conv_kernel);
  c.conv_bias = config_value<bool>(j, "conv_bias", c.conv_bias);
  c.feat_proj_layer_norm =
      c.model_type == "wav2vec2" || config_value<bool>(j, "feat_proj_layer_norm", c.feat_proj_layer_norm);
  c.num_conv_pos_embeddings = config_value<int64_t>(j, "num_conv_pos_embeddings", c.num_conv_pos_embeddings);
  c.num_conv_pos_embedding_groups =
      config_value<int64_t>(j, "num_conv_pos_embedding_groups", c.num_conv_pos_embedding_groups);
  c.do_stable_layer_norm = config_value<bool>(j, "do_stable_layer_norm", c.do_stable_layer_norm);
  c.vocab_size = config_value<int64_t>(j, "vocab_size", c.vocab_size);
  c.pad_token_id = config_value<int64_t>(j, "pad_token_id", c.pad_token_id);

  require_positive("hidden_size", c.hidden_size);
  require_positive("num_hidden_layers", c.num_hidden_layers);
  require_positive("num_attention_heads", c.num_attention_heads);
  require_positive("intermediate_size", c.intermediate_size);
  require_positive("num_conv_pos_embeddings", c.num_conv_pos_embeddings);
  require_positive("num_conv_pos_embedding_groups", c.num_conv_pos_embedding_groups);
  if (c.hidden_size % c.num_attention_heads != 0) {
    throw InvalidInput(fmt::format("config.json: hidden_size {} is not divisible by num_attention_heads {}",
                                   c.hidden_size, c.num_attention_heads));
  }
  if (c.conv_dim.empty() || c.conv_dim.size() != c.conv_stride.size() ||
      c.conv_dim.size() != c.conv_kernel.size()) {
    throw InvalidInput(fmt::format("config.json: conv_dim, conv_stride and conv_kernel must be non-empty lists of "
                                   "one length (got {}, {}, {})",
                                   c.conv_dim.size(), c.conv_stride.size(), c.conv_kernel.size()));
  }
  for (size_t i = 0; i < c.conv_dim.size(); ++i) {
    if (c.conv_dim[i] <= 0 || c.conv_stride[i] <= 0 || c.conv_kernel[i] <= 0) {
      throw InvalidInput(fmt::format("config.json: conv layer {} has a non-positive dim, stride or kernel", i));
    }
  }
  if (c.feat_extract_norm != "group" && c.feat_extract_norm != "layer") {
    throw InvalidInput(fmt::format("config.json: feat_extract_norm is '{}', expected 'group' or 'layer'",
                                   c.feat_extract_norm));
  }
  if (auto layers = j.find("num_feat_extract_layers");
      layers != j.end() && layers->is_number_integer() && layers->get<size_t>() != c.conv_dim.size()) {
    throw InvalidInput(fmt::format("config.json: num_feat_extract_layers {} disagrees with conv_dim's {} entries",
                                   layers->get<int64_t>(), c.conv_dim.size()));
  }
  reject_unsupported(j, "add_adapter", "a conv adapter after the encoder");
  reject_unsupported(j, "adapter_attn_dim", "MMS attention adapters");
  reject_unsupported(j, "conv_pos_batch_norm", "BatchNorm instead of weight norm in the positional conv");
  reject_unsupported(j, "use_weighted_layer_sum", "a weighted sum of layers for a classification head");
  return c;
}

HookedHubert::HookedHubert(const io::Checkpoint& checkpoint, const LoadOptions& options)
    : config_(HubertConfig::from_json(checkpoint.config())),
      conv_activation_(activation_from_name(config_.feat_extract_activation)) {
  const auto& c = config_;
  set_checkpoint_dir(checkpoint.dir());
  auto preprocessor = checkpoint.read_json("preprocessor_config.json");
  if (!preprocessor.is_null()) waveform_options_ = audio::WaveformOptions::from_json(preprocessor);

  io::WeightLoader loader(checkpoint, {options.dtype, options.device});
  // The *ForCTC (and other head) checkpoints nest the base model under "hubert." / "wav2vec2.".
  const std::string root =
      loader.contains(c.model_type + ".feature_projection.projection.weight") ? c.model_type : "";
  const WeightScope weights{loader, root};
  // SpecAugment's learned mask vector: training only.
  loader.ignore(join(root, "masked_spec_embed"));
  HookNamer names(registry_, "");

  // Conv feature encoder.
  HookNamer extractor = names.child("feature_extractor");
  hook_input_ = &extractor.point("hook_input", {{1, "samples"}});
  int64_t in_channels = 1;
  for (size_t i = 0; i < c.conv_dim.size(); ++i) {
    const auto layer_weights = weights.child("feature_extractor.conv_layers." + std::to_string(i));
    ConvLayer layer;
    layer.conv = Conv1d(layer_weights.child("conv"), in_channels, c.conv_dim[i], c.conv_kernel[i],
                        c.conv_stride[i], 0, c.conv_bias);
    if (c.feat_extract_norm == "layer") {
      layer.norm.emplace(layer_weights.child("layer_norm"), ChannelNormKind::across_channels, c.conv_dim[i]);
    } else if (i == 0) {
      layer.norm.emplace(layer_weights.child("layer_norm"), ChannelNormKind::per_channel, c.conv_dim[i]);
    }
    layer.hook_out =
        &extractor.child("conv" + std::to_string(i)).point("hook_out", {{2, "conv" + std::to_string(i)}});
    conv_layers_.push_back(std::move(layer));
    in_channels = c.conv_dim[i];
  }

  // Feature projection.
  HookNamer projection = names.stack("feature_projection", hooks::Stack::encoder);
  const auto projection_weights = weights.child("feature_projection");
  if (c.feat_proj_layer_norm) {
    projection_norm_ = std::make_unique<Norm>(projection_weights.child("layer_norm"), projection.child("ln"),
                                              NormKind::layer_norm, in_channels, c.layer_norm_eps);
  }
  projection_ = Linear(projection_weights.child("projection"), in_channels, c.hidden_size, true);
  hook_projection_out_ = &projection.point("hook_out");

  // Encoder.
  HookNamer encoder = names.stack("encoder", hooks::Stack::encoder);
  const auto encoder_weights = weights.child("encoder");
  pos_conv_ = ConvPositionalEmbedding(encoder_weights.child("pos_conv_embed"), c.hidden_size,
                                      c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups,
                                      activation_from_name(c.feat_extract_activation));
  hook_pos_conv_ = &encoder.point("hook_pos_conv");
  auto make_encoder_norm = [&](const char* hook_name) {
    encoder_norm_ = std::make_unique<Norm>(encoder_weights.child("layer_norm"), encoder.child(hook_name),
                                           NormKind::layer_norm, c.hidden_size, c.layer_norm_eps);
  };
  if (!c.do_stable_layer_norm) make_encoder_norm("ln_pre");
  const BlockConfig block = hubert_block(c);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    blocks_.push_back(std::make_unique<TransformerBlock>(encoder_weights.child("layers." + std::to_string(i)),
                                                         encoder.layer("blocks", i), block));
  }
  if (c.do_stable_layer_norm) make_encoder_norm("ln_final");

  // CTC head (ForCTC checkpoints only; it sits outside the base model's prefix).
  if (!root.empty() && loader.contains("lm_head.weight")) {
    lm_head_ = Linear(WeightScope{loader, "lm_head"}, c.hidden_size, c.vocab_size, true);
    hook_logits_ = &names.stack("ctc", hooks::Stack::encoder).point("hook_logits");
    auto vocab = checkpoint.read_json("vocab.json");
    if (!vocab.is_null()) {
      ctc_decoder_.emplace(vocab, text::CtcVocabOptions::from_json(checkpoint.read_json("tokenizer_config.json"),
                                                                   checkpoint.read_json("special_tokens_map.json")));
      if (ctc_decoder_->blank_id() != c.pad_token_id) {
        throw InvalidInput(fmt::format("{}: the tokenizer's pad token has id {} but config.json's pad_token_id is {}",
                                       checkpoint.dir().string(), ctc_decoder_->blank_id(), c.pad_token_id));
      }
    }
  }
  loader.finish();
  settle_placement();
}

std::unique_ptr<HookedHubert> HookedHubert::from_pretrained(const std::filesystem::path& dir,
                                                            const LoadOptions& options) {
  return std::make_unique<HookedHubert>(io::Checkpoint::open(dir), options);
}

SPEECHLENS_REGISTER_FAMILY(hubert, "hubert", HookedHubert)
SPEECHLENS_REGISTER_FAMILY(wav2vec2, "wav2vec2", HookedHubert)

nlohmann::json HookedHubert::config_json() const {
  const auto& c = config_;
  int64_t hop = 1, receptive_field = 1;
  for (size_t i = c.conv_dim.size(); i-- > 0;) receptive_field = (receptive_field - 1) * c.conv_stride[i] + c.conv_kernel[i];
  for (int64_t stride : c.conv_stride) hop *= stride;
  nlohmann::json j = {
      {"model_family", c.model_type},
      {"n_layers", c.num_hidden_layers},
      {"d_model", c.hidden_size},
      {"n_heads", c.num_attention_heads},
      {"d_head", c.hidden_size / c.num_attention_heads},
      {"d_mlp", c.intermediate_size},
      {"act_fn", c.hidden_act},
      {"normalization_type", "LN"},
      {"eps", c.layer_norm_eps},
      {"stable_layer_norm", c.do_stable_layer_norm},
      {"feat_extract_norm", c.feat_extract_norm},
      {"conv_dim", c.conv_dim},
      {"conv_kernel", c.conv_kernel},
      {"conv_stride", c.conv_stride},
      {"samples_per_frame", hop},
      {"receptive_field", receptive_field},
      {"sampling_rate", waveform_options_.sampling_rate},
      {"do_normalize", waveform_options_.do_normalize},
      {"return_attention_mask", waveform_options_.return_attention_mask},
      {"has_ctc_head", has_ctc_head()},
      {"can_transcribe", can_transcribe()},
  };
  if (has_ctc_head()) {
    j["d_vocab"] = c.vocab_size;
    j["pad_token_id"] = c.pad_token_id;
  }
  return j;
}

int64_t HookedHubert::frames_for_samples(int64_t samples) const {
  for (size_t i = 0; i < config_.conv_kernel.size(); ++i) {
    // Floor division as HF's torch.div(..., rounding_mode="floor"), also for negative values.
    const int64_t numerator = samples - config_.conv_kernel[i];
    const int64_t stride = config_.conv_stride[i];
    samples = (numerator >= 0 ? numerator / stride : -((-numerator + stride - 1) / stride)) + 1;
  }
  return samples;
}

at::Tensor HookedHubert::frames_for_samples(const at::Tensor& sample_lengths) const {
  auto lengths = sample_lengths.to(at::kCPU, at::kLong).contiguous();
  auto frames = at::empty_like(lengths);
  auto in = lengths.data_ptr<int64_t>();
  auto out = frames.data_ptr<int64_t>();
  for (int64_t i = 0; i < lengths.numel(); ++i) out[i] = frames_for_samples(in[i]);
  return frames;
}

at::Tensor HookedHubert::valid_frames(const at::Tensor& sample_lengths, int64_t batch, int64_t samples) const {
  if (sample_lengths.dim() != 1 || sample_lengths.size(0) != batch) {
    throw InvalidInput(fmt::format("sample lengths must be [batch={}], got {}", batch,
                                   c10::str(sample_lengths.sizes())));
  }
  auto lengths = sample_lengths.to(at::kCPU, at::kLong);
  const int64_t shortest = lengths.min().item<int64_t>(), longest = lengths.max().item<int64_t>();
  if (shortest < 1 || longest > samples) {
    throw InvalidInput(fmt::format("sample lengths must lie in [1, {}] (the padded length), got [{}, {}]", samples,
                                   shortest, longest));
  }
  if (frames_for_samples(shortest) < 1) {
    throw InvalidInput(fmt::format("a clip of {} samples is shorter than the conv feature encoder's receptive "
                                   "field and gives no frame; pad or drop it",
                                   shortest));
  }
  return frames_for_samples(lengths);
}

at::Tensor HookedHubert::conv_lengths(const at::Tensor& sample_lengths, size_t layers) const {
  auto lengths = sample_lengths.to(at::kCPU, at::kLong).clone();
  auto* v = lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < lengths.numel(); ++b) {
    int64_t samples = v[b];
    for (size_t i = 0; i < layers; ++i) {
      const int64_t numerator = samples - config_.conv_kernel[i];
      const int64_t stride = config_.conv_stride[i];
      samples = (numerator >= 0 ? numerator / stride : -((-numerator + stride - 1) / stride)) + 1;
    }
    v[b] = samples;
  }
  return lengths;
}

at::Tensor HookedHubert::encode_in_call(const at::Tensor& wave_in, const at::Tensor& sample_lengths, int64_t batch,
                                        hooks::RunContext& ctx) {
  auto& run = ctx.state();
  StackStart start = stack_start(registry_, hooks::Stack::encoder, blocks_, batch, device_, dtype_);
  at::Tensor x;
  int64_t frames = 0;
  if (start.resumed()) {
    x = start.residual;
    frames = x.size(1);
  } else {
    if (!wave_in.defined() || wave_in.dim() != 2) {
      throw InvalidInput(fmt::format("{} expects a waveform batch [batch, samples], got {}. Use "
                                     "model.features(wave) to normalise raw audio",
                                     config_.model_type,
                                     wave_in.defined() ? c10::str(wave_in.sizes()) : std::string("nothing")));
    }
    const int64_t samples = wave_in.size(1);
    frames = frames_for_samples(samples);
    if (wave_in.size(0) < 1 || frames < 1) {
      throw InvalidInput(fmt::format("a waveform of {} samples is shorter than the conv feature encoder's "
                                     "receptive field and gives no frame",
                                     samples));
    }
    if (samples > max_input_samples_) {
      throw InvalidInput(fmt::format(
          "a waveform of {:.1f} s is longer than this model takes in one forward ({:.0f} s, set with "
          "set_max_input_seconds): attention over {} frames would need memory quadratic in the length. Split the "
          "audio into chunks (sl.data does) or raise the limit",
          static_cast<double>(samples) / waveform_options_.sampling_rate,
          static_cast<double>(max_input_samples_) / waveform_options_.sampling_rate, frames));
    }
  }
  at::Tensor valid_frames_of_batch;
  if (sample_lengths.defined()) {
    const int64_t samples = wave_in.defined() ? wave_in.size(1) : sample_lengths.max().item<int64_t>();
    valid_frames_of_batch = valid_frames(sample_lengths, batch, samples);
    run.set_lengths("samples", sample_lengths);
    for (size_t i = 0; i < conv_layers_.size(); ++i) {
      run.set_lengths("conv" + std::to_string(i), conv_lengths(sample_lengths, i + 1));
    }
    run.set_lengths("encoder", valid_frames_of_batch);
  }

  TransformerBlock::Inputs inputs;
  if (valid_frames_of_batch.defined()) {
    auto positions = at::arange(frames, at::TensorOptions().dtype(at::kLong));
    inputs.self_mask.key_valid = (positions.unsqueeze(0) < valid_frames_of_batch.unsqueeze(1)).to(device_);
  }
  if (!start.resumed()) {
    x = (*hook_input_)(enter_graph(wave_in.to(device_, dtype_))).unsqueeze(1);  // [B, 1, samples]
    for (const auto& layer : conv_layers_) {
      x = layer.conv(x);
      if (layer.norm) x = (*layer.norm)(x);
      x = (*layer.hook_out)(apply_activation(conv_activation_, x));
    }
    x = x.transpose(1, 2);  // [B, T, C]
    if (projection_norm_) x = (*projection_norm_)(x);
    x = (*hook_projection_out_)(projection_(x));
    if (ctx.stopped()) return x;
    if (inputs.self_mask.key_valid.defined()) {
      // HF zeroes padded frames before the positional conv, so they do not leak into real ones.
      x = x.masked_fill(inputs.self_mask.key_valid.logical_not().unsqueeze(-1), 0);
    }
    x = x + (*hook_pos_conv_)(pos_conv_(x));
    if (!config_.do_stable_layer_norm) x = (*encoder_norm_)(x);
  }
  x = run_blocks(blocks_, x, start.first_block, inputs);
  if (ctx.stopped()) return x;
  if (config_.do_stable_layer_norm) x = (*encoder_norm_)(x);
  return x;
}

at::Tensor HookedHubert::encode(const at::Tensor& wave, const at::Tensor& sample_lengths, const RunOptions& options) {
  ModelInputs inputs{wave, {}, sample_lengths, {}};
  Call call(*this, options, inputs);
  return call.result(encode_in_call(wave, sample_lengths, inputs.batch_size(), call.context()));
}

at::Tensor HookedHubert::ctc_logits(const at::Tensor& hidden) const {
  if (!lm_head_) {
    throw InvalidInput(fmt::format("this {} checkpoint has no CTC head (lm_head); load a *ForCTC checkpoint to "
                                   "get logits or transcribe",
                                   config_.model_type));
  }
  return (*hook_logits_)((*lm_head_)(hidden));
}

at::Tensor HookedHubert::run_impl(const ModelInputs& inputs, const RunOptions&, hooks::RunContext& ctx) {
  if (inputs.tokens.defined()) {
    throw InvalidInput(fmt::format("{} takes no tokens: its input is the waveform alone", config_.model_type));
  }
  auto hidden = encode_in_call(inputs.features, inputs.feature_lengths, inputs.batch_size(), ctx);
  if (ctx.stopped()) return {};
  return lm_head_ ? ctc_logits(hidden) : hidden;
}

ModelInputs HookedHubert::prepare(const std::vector<at::Tensor>& waves, std::optional<int64_t> sampling_rate) const {
  auto clips = to_model_rate(waves, sampling_rate);
  auto batch = audio::prepare_waveforms(clips, waveform_options_);
  std::vector<int64_t> counts;
  for (const auto& clip : clips) counts.push_back(clip.numel());
  ModelInputs inputs;
  inputs.features = batch.input_values;
  inputs.feature_lengths = at::tensor(counts, at::kLong);
  return inputs;
}

void HookedHubert::set_max_input_seconds(double seconds) {
  if (!(seconds > 0)) throw InvalidInput(fmt::format("max_input_seconds must be positive, got {}", seconds));
  max_input_samples_ = static_cast<int64_t>(seconds * waveform_options_.sampling_rate);
}

std::vector<StackInfo> HookedHubert::stacks() const {
  return {{hooks::Stack::encoder, "encoder", config_.num_hidden_layers, config_.hidden_size, false, has_ctc_head(),
           "encoder", config_.do_stable_layer_norm ? "encoder.ln_final" : ""}};
}

const Norm* HookedHubert::final_norm_layer(hooks::Stack stack) const {
  this->stack(stack);
  return config_.do_stable_layer_norm ? encoder_norm_.get() : nullptr;
}

at::Tensor HookedHubert::unembed(hooks::Stack stack, const at::Tensor& normed) const {
  this->stack(stack);
  if (!lm_head_) {
    throw InvalidInput(fmt::format("this {} checkpoint has no CTC head (lm_head) to read a layer out with",
                                   config_.model_type));
  }
  return (*lm_head_)(normed);
}

at::Tensor HookedHubert::unembedding(hooks::Stack stack) const {
  this->stack(stack);
  if (!lm_head_) throw InvalidInput(fmt::format("this {} checkpoint has no CTC head (lm_head)", config_.model_type));
  return lm_head_->weight;
}

const text::CtcDecoder& HookedHubert::ctc_decoder() const {
  if (!has_ctc_head()) {
    throw InvalidInput(fmt::format("this {} checkpoint has no CTC head (lm_head), so it cannot transcribe; load a "
                                   "*ForCTC checkpoint",
                                   config_.model_type));
  }
  if (!ctc_decoder_) {
    throw InvalidInput("the checkpoint folder has no vocab.json, which CTC transcription needs to turn ids into text");
  }
  return *ctc_decoder_;
}

std::vector<std::string> HookedHubert::transcribe(const std::vector<at::Tensor>& waves,
                                                  std::optional<int64_t> sampling_rate) {
  return transcribe(to_model_rate(waves, sampling_rate), false);
}

std::vector<std::string> HookedHubert::transcribe(const std::vector<at::Tensor>& waves, bool skip_special_tokens) {
  const auto& decoder = ctc_decoder();
  for (const auto& wave : waves) {
    if (wave.defined() && wave.dim() == 1 && frames_for_samples(wave.numel()) < 1) {
      throw InvalidInput(fmt::format("a clip of {} samples is too short to transcribe: it gives no frame", wave.numel()));
    }
  }
  ModelInputs inputs = prepare(waves, sampling_rate());
  // As HF's pipeline: the padded batch is masked only when the preprocessor asks for a mask.
  const at::Tensor sample_lengths = inputs.feature_lengths;
  if (!waveform_options_.return_attention_mask) inputs.feature_lengths = at::Tensor();
  at::Tensor logits;
  {
    c10::NoGradGuard no_grad;
    logits = run(inputs);
  }
  auto ids = text::greedy_ids(logits, frames_for_samples(sample_lengths));
  std::vector<std::string> texts;
  for (const auto& item : ids) texts.push_back(decoder.decode(item, skip_special_tokens));
  return texts;
}

void HookedHubert::visit(const TensorVisitor& fn) {
  for (auto& layer : conv_layers_) {
    layer.conv.visit(fn);
    if (layer.norm) layer.norm->visit(fn);
  }
  if (projection_norm_) projection_norm_->visit(fn);
  projection_.visit(fn);
  pos_conv_.visit(fn);
  encoder_norm_->visit(fn);
  for (auto& block : blocks_) block->visit(fn);
  if (lm_head_) lm_head_->visit(fn);
}

}  // namespace speechlens::models
