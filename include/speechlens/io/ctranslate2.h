#pragma once
// CTranslate2 model folders (model.bin + config.json + vocabulary/tokenizer files), the format
// faster-whisper and its offline bundles ship Whisper in, and their conversion into the
// Hugging Face checkpoint layout every SpeechLens model loads.
//
// model.bin (all integers little-endian; CTranslate2 binary versions 1 to 6):
//   u32 binary_version
//   version >= 2: string spec_name, u32 spec_revision       string = u16 length (including
//   u32 variable_count                                               the NUL) + bytes + NUL
//   variable_count x { string name, u8 rank, u32 dims[rank],
//                      version >= 4: u8 dtype id (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16),
//                                    u32 byte count
//                      version <= 3: u8 item size (4 f32, 2 i16, 1 i8), u32 element count
//                      byte count bytes of data, row-major }
//   version >= 3: u32 alias_count, alias_count x { string alias, string variable_name }
// Quantised weights ("<name>" int8/int16) come with "<name>_scale" (float32, one per row for
// int8, a scalar for int16); the float value is quantised / scale.
//
// Reading checks every length against the bytes left and every size product for overflow, so
// a truncated or hostile file fails with InvalidInput naming the variable and the offset.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace speechlens::io {

class CTranslate2Model {
 public:
  // Reads `path` (a model.bin, or a folder holding one). IoError when it cannot be read,
  // InvalidInput when it is not a well-formed CTranslate2 model.
  static CTranslate2Model read(const std::filesystem::path& path);
  // Parses the bytes of a model.bin; `source` names them in error messages.
  static CTranslate2Model parse(std::span<const std::byte> bytes, const std::string& source);

  uint32_t binary_version() const { return binary_version_; }
  const std::string& spec_name() const { return spec_name_; }  // "WhisperSpec"; empty for v1
  uint32_t spec_revision() const { return spec_revision_; }

  std::vector<std::string> names() const;  // stored variables, sorted (aliases excluded)
  const std::map<std::string, std::string>& aliases() const { return aliases_; }
  bool contains(const std::string& name) const;  // variables and aliases
  // The tensor as stored (aliases resolved). NameError for an unknown name, with near names.
  const at::Tensor& get(const std::string& name) const;
  // A floating-point tensor: float16/bfloat16 upcast to float32, int8/int16 weights divided
  // by their "<name>_scale". InvalidInput when an integer variable has no usable scale.
  at::Tensor get_float(const std::string& name) const;
  // Scalar attributes (num_heads, flags): the single element of a rank-0 variable.
  int64_t get_int(const std::string& name) const;
  std::optional<int64_t> get_int_optional(const std::string& name) const;

  // Variables in file order and aliases, for writers and tests.
  const std::vector<std::pair<std::string, at::Tensor>>& variables() const { return variables_; }

 private:
  uint32_t binary_version_ = 0;
  std::string spec_name_;
  uint32_t spec_revision_ = 0;
  std::vector<std::pair<std::string, at::Tensor>> variables_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> aliases_;
};

// Writes a model.bin of binary version 6 (the layout CTranslate2's Python converter writes).
// Tensors must have a dtype the format stores (float32, int8, int16, int32, float16,
// bfloat16) and dimensions below 2^32; aliases must name written variables.
void save_ctranslate2_model(const std::filesystem::path& path, const std::string& spec_name,
                            uint32_t spec_revision,
                            const std::vector<std::pair<std::string, at::Tensor>>& variables,
                            const std::map<std::string, std::string>& aliases = {});

// --- Whisper -----------------------------------------------------------------------------

// The HF WhisperForConditionalGeneration state dict of a CTranslate2 WhisperSpec model, in
// float32 (or `dtype`): fused projections split (self-attention qkv, cross-attention kv),
// the key bias dropped (HF's k_proj has none; a constant key bias only adds a per-query
// constant to the scores, which softmax cancels), the output projection omitted when it is
// tied to the token embedding. InvalidInput when the spec is not Whisper or a variable is
// missing or mis-shaped.
std::vector<std::pair<std::string, at::Tensor>> whisper_hf_state_dict(const CTranslate2Model& model,
                                                                     at::ScalarType dtype = at::kFloat);

// The HF config.json of the model: dimensions derived from the tensor shapes and head counts,
// token ids and generation settings from `generation_config` (see below).
nlohmann::json whisper_hf_config(const CTranslate2Model& model, const nlohmann::json& generation_config);

// The HF generation_config.json: special token ids read from the tokenizer folder `ct2_dir`
// (tokenizer.json), suppress_tokens / begin_suppress_tokens / alignment_heads / lang_to_id
// from CTranslate2's config.json (suppress_ids, suppress_ids_begin, alignment_heads,
// lang_ids), and the forced prompt <|startoftranscript|> [<|lang|> <|task|>] <|notimestamps|>.
nlohmann::json whisper_hf_generation_config(const CTranslate2Model& model, const std::filesystem::path& ct2_dir);

// Converts the CTranslate2 Whisper folder `ct2_dir` (model.bin, config.json, tokenizer.json)
// into an HF checkpoint folder `out_dir`: config.json, model.safetensors, generation_config.json,
// preprocessor_config.json, tokenizer.json. Files are written under temporary names and the
// folder is renamed into place last, so an interrupted conversion never leaves a folder that
// looks complete. Throws when out_dir already exists.
void convert_ctranslate2_whisper(const std::filesystem::path& ct2_dir, const std::filesystem::path& out_dir,
                                 at::ScalarType dtype = at::kFloat);

}  // namespace speechlens::io
