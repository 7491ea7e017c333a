#include "speechlens/io/ctranslate2.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "json_util.h"
#include "speechlens/io/safetensors.h"
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"

static_assert(std::endian::native == std::endian::little,
              "model.bin stores little-endian data; big-endian hosts would need byte swaps");

namespace fs = std::filesystem;

namespace speechlens::io {
namespace {

constexpr uint32_t kNewestBinaryVersion = 6;
constexpr uint32_t kWrittenBinaryVersion = 6;
// CTranslate2 itself has no cap; no model it converts has a variable of rank above 4.
constexpr size_t kMaxRank = 8;
// Smallest possible serialized variable: name "x" (2 + 2 bytes), rank, dtype, byte count.
constexpr size_t kMinVariableBytes = 4 + 1 + 1 + 4;
constexpr size_t kMinAliasBytes = 4 + 4;

// CTranslate2's DataType enum, the dtype id of binary version >= 4.
struct Ct2Dtype {
  uint8_t id;
  at::ScalarType type;
};
constexpr Ct2Dtype kDtypes[] = {
    {0, at::kFloat}, {1, at::kChar}, {2, at::kShort}, {3, at::kInt}, {4, at::kHalf}, {5, at::kBFloat16},
};

std::optional<at::ScalarType> dtype_of_id(uint8_t id) {
  for (const auto& d : kDtypes) {
    if (d.id == id) return d.type;
  }
  return std::nullopt;
}

std::optional<uint8_t> id_of_dtype(at::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return d.id;
  }
  return std::nullopt;
}

// Bounds-checked little-endian reads over the file's bytes.
class ByteReader {
 public:
  ByteReader(std::span<const std::byte> bytes, const std::string& source) : bytes_(bytes), source_(source) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return bytes_.size() - offset_; }

  template <typename T>
  T read(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what).data(), sizeof(T));
    return value;
  }

  std::span<const std::byte> take(size_t count, const std::string& what) {
    if (count > remaining()) {
      fail(fmt::format("truncated: {} needs {} bytes at offset {} but only {} remain", what, count, offset_,
                       remaining()));
    }
    auto span = bytes_.subspan(offset_, count);
    offset_ += count;
    return span;
  }

  // u16 length including the terminating NUL, then the characters and the NUL.
  std::string read_string(const std::string& what) {
    const size_t start = offset_;
    const auto length = read<uint16_t>(what.c_str());
    if (length == 0) fail(fmt::format("{} at offset {} has length 0 (it must at least hold its NUL)", what, start));
    auto chars = take(length, what);
    const auto* text = reinterpret_cast<const char*>(chars.data());
    if (text[length - 1] != '\0') fail(fmt::format("{} at offset {} is not NUL-terminated", what, start));
    std::string value(text, length - 1);
    if (value.find('\0') != std::string::npos) fail(fmt::format("{} at offset {} holds a NUL byte", what, start));
    return value;
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw InvalidInput(fmt::format("{}: not a valid CTranslate2 model.bin: {}", source_, message));
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& source_;
  size_t offset_ = 0;
};

std::vector<std::byte> read_file(const fs::path& path) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    throw IoError(fmt::format("cannot read {}: no such file (a CTranslate2 model folder holds model.bin)",
                              path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open {}", path.string()));
  const auto size = fs::file_size(path, error);
  if (error) throw IoError(fmt::format("cannot stat {}: {}", path.string(), error.message()));
  std::vector<std::byte> bytes(size);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<uintmax_t>(in.gcount()) != size) throw IoError(fmt::format("{} shrank while being read", path.string()));
  return bytes;
}

bool is_integer(at::ScalarType type) { return type == at::kChar || type == at::kShort || type == at::kInt; }

}  // namespace

CTranslate2Model CTranslate2Model::read(const fs::path& path) {
  const fs::path file = fs::is_directory(path) ? path / "model.bin" : path;
  const auto bytes = read_file(file);
  return parse(bytes, file.string());
}

CTranslate2Model CTranslate2Model::parse(std::span<const std::byte> bytes, const std::string& source) {
  ByteReader in(bytes, source);
  CTranslate2Model model;
  model.binary_version_ = in.read<uint32_t>("the binary version");
  if (model.binary_version_ < 1 || model.binary_version_ > kNewestBinaryVersion) {
    in.fail(fmt::format("binary version {} is not one this reader knows (1 to {}); a newer CTranslate2 may "
                        "have changed the layout",
                        model.binary_version_, kNewestBinaryVersion));
  }
  if (model.binary_version_ >= 2) {
    model.spec_name_ = in.read_string("the spec name");
    model.spec_revision_ = in.read<uint32_t>("the spec revision");
  } else {
    model.spec_revision_ = 1;
  }

  const auto count = in.read<uint32_t>("the variable count");
  if (count > in.remaining() / kMinVariableBytes) {
    in.fail(fmt::format("it declares {} variables but only {} bytes follow", count, in.remaining()));
  }
  model.variables_.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    const size_t start = in.offset();
    std::string name = in.read_string(fmt::format("the name of variable {}", i));
    if (name.empty()) in.fail(fmt::format("variable {} at offset {} has an empty name", i, start));
    if (model.index_.count(name)) in.fail(fmt::format("variable '{}' occurs twice", name));
    const auto rank = in.read<uint8_t>("a rank");
    if (rank > kMaxRank) in.fail(fmt::format("variable '{}' has rank {} (at most {} is supported)", name, rank, kMaxRank));
    std::vector<int64_t> shape(rank);
    uint64_t numel = 1;
    for (auto& dim : shape) {
      dim = in.read<uint32_t>("a dimension");
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) {
        in.fail(fmt::format("variable '{}': the element count of shape {} overflows", name, shape));
      }
    }
    at::ScalarType dtype;
    uint64_t num_bytes = 0;
    if (model.binary_version_ >= 4) {
      const auto id = in.read<uint8_t>("a dtype id");
      auto type = dtype_of_id(id);
      if (!type) in.fail(fmt::format("variable '{}' has unknown dtype id {} (known: 0 to 5)", name, id));
      dtype = *type;
      num_bytes = in.read<uint32_t>("a byte count");
    } else {
      // Versions 1-3 stored the item size, not the type; CTranslate2 maps it this way.
      const auto item_size = in.read<uint8_t>("an item size");
      switch (item_size) {
        case 4: dtype = at::kFloat; break;
        case 2: dtype = at::kShort; break;
        case 1: dtype = at::kChar; break;
        default: in.fail(fmt::format("variable '{}' has item size {} (expected 1, 2 or 4)", name, item_size));
      }
      num_bytes = static_cast<uint64_t>(in.read<uint32_t>("an element count")) * item_size;
    }
    uint64_t expected_bytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(c10::elementSize(dtype)), &expected_bytes) ||
        expected_bytes != num_bytes) {
      in.fail(fmt::format("variable '{}' of shape {} and dtype {} needs {} bytes but declares {}", name, shape,
                          c10::toString(dtype), numel * c10::elementSize(dtype), num_bytes));
    }
    auto data = in.take(num_bytes, fmt::format("the data of variable '{}'", name));
    at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (num_bytes > 0) std::memcpy(tensor.data_ptr(), data.data(), num_bytes);
    model.index_.emplace(name, model.variables_.size());
    model.variables_.emplace_back(std::move(name), std::move(tensor));
  }

  if (model.binary_version_ >= 3) {
    const auto alias_count = in.read<uint32_t>("the alias count");
    if (alias_count > in.remaining() / kMinAliasBytes) {
      in.fail(fmt::format("it declares {} aliases but only {} bytes follow", alias_count, in.remaining()));
    }
    for (uint32_t i = 0; i < alias_count; ++i) {
      std::string alias = in.read_string(fmt::format("alias {}", i));
      std::string target = in.read_string(fmt::format("the target of alias '{}'", alias));
      if (alias.empty() || model.index_.count(alias) || model.aliases_.count(alias)) {
        in.fail(fmt::format("alias '{}' is empty or repeats a name", alias));
      }
      if (!model.index_.count(target)) {
        in.fail(fmt::format("alias '{}' names '{}', which the file does not hold", alias, target));
      }
      model.aliases_.emplace(std::move(alias), std::move(target));
    }
  }
  if (in.remaining() != 0) {
    in.fail(fmt::format("{} unexpected bytes follow the last {} at offset {}", in.remaining(),
                        model.binary_version_ >= 3 ? "alias" : "variable", in.offset()));
  }
  return model;
}

std::vector<std::string> CTranslate2Model::names() const {
  std::vector<std::string> names;
  for (const auto& [name, index] : index_) names.push_back(name);
  return names;
}

bool CTranslate2Model::contains(const std::string& name) const {
  return index_.count(name) > 0 || aliases_.count(name) > 0;
}

const at::Tensor& CTranslate2Model::get(const std::string& name) const {
  auto alias = aliases_.find(name);
  const std::string& resolved = alias == aliases_.end() ? name : alias->second;
  auto it = index_.find(resolved);
  if (it == index_.end()) {
    // Names differ by a scope more often than by a typo: suggest those sharing the parent.
    const std::string parent = name.substr(0, name.rfind('/') + 1);
    std::vector<std::string> near;
    for (const auto& [other, index] : index_) {
      if (!parent.empty() && other.rfind(parent, 0) == 0 && near.size() < 6) near.push_back(other);
    }
    throw NameError(fmt::format("the CTranslate2 model has no variable '{}'{}", name,
                                near.empty() ? "" : fmt::format("; near names: {}", fmt::join(near, ", "))));
  }
  return variables_[it->second].second;
}

at::Tensor CTranslate2Model::get_float(const std::string& name) const {
  const at::Tensor& stored = get(name);
  if (at::isFloatingType(stored.scalar_type())) return stored.to(at::kFloat);
  const std::string scale_name = name + "_scale";
  if (!contains(scale_name)) {
    throw InvalidInput(fmt::format("CTranslate2 variable '{}' is {} but has no '{}' to dequantize it", name,
                                   c10::toString(stored.scalar_type()), scale_name));
  }
  const at::Tensor scale = get(scale_name).to(at::kFloat);
  at::Tensor values = stored.to(at::kFloat);
  const bool per_row = stored.dim() >= 1 && scale.dim() == 1 && scale.size(0) == stored.size(0);
  if (!per_row && scale.numel() != 1) {
    throw InvalidInput(fmt::format("'{}' has shape {}; expected a scalar or one scale per row of '{}' {}", scale_name,
                                   scale.sizes(), name, stored.sizes()));
  }
  at::Tensor result =
      per_row ? (values.reshape({stored.size(0), -1}) / scale.unsqueeze(1)).reshape(stored.sizes()) : values / scale;
  if (!at::isfinite(result).all().item<bool>()) {
    throw InvalidInput(fmt::format("dequantizing '{}' with '{}' gives non-finite values (a zero scale?)", name, scale_name));
  }
  return result;
}

std::optional<int64_t> CTranslate2Model::get_int_optional(const std::string& name) const {
  if (!contains(name)) return std::nullopt;
  return get_int(name);
}

int64_t CTranslate2Model::get_int(const std::string& name) const {
  const at::Tensor& value = get(name);
  if (value.numel() != 1 || !(is_integer(value.scalar_type()) || value.scalar_type() == at::kByte)) {
    throw InvalidInput(fmt::format("CTranslate2 attribute '{}' should be one integer, got {} of shape {}", name,
                                   c10::toString(value.scalar_type()), value.sizes()));
  }
  return value.to(at::kLong).item<int64_t>();
}

void save_ctranslate2_model(const fs::path& path, const std::string& spec_name, uint32_t spec_revision,
                            const std::vector<std::pair<std::string, at::Tensor>>& variables,
                            const std::map<std::string, std::string>& aliases) {
  std::string out;
  auto put = [&out](const auto& value) { out.append(reinterpret_cast<const char*>(&value), sizeof(value)); };
  auto put_string = [&](const std::string& text, const char* what) {
    if (text.size() + 1 > std::numeric_limits<uint16_t>::max() || text.find('\0') != std::string::npos) {
      throw InvalidInput(fmt::format("{} '{}' cannot be stored (at most 65534 bytes, no NUL)", what, text));
    }
    put(static_cast<uint16_t>(text.size() + 1));
    out.append(text);
    out.push_back('\0');
  };
  put(kWrittenBinaryVersion);
  put_string(spec_name, "spec name");
  put(spec_revision);
  put(static_cast<uint32_t>(variables.size()));
  std::set<std::string> written;
  for (const auto& [name, tensor] : variables) {
    if (!tensor.defined()) throw InvalidInput(fmt::format("variable '{}' is undefined", name));
    auto id = id_of_dtype(tensor.scalar_type());
    if (!id) {
      throw InvalidInput(fmt::format("variable '{}' has dtype {}, which CTranslate2 cannot store", name,
                                     c10::toString(tensor.scalar_type())));
    }
    if (tensor.dim() > static_cast<int64_t>(kMaxRank)) throw InvalidInput(fmt::format("variable '{}' has too many dims", name));
    const auto bytes = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    if (bytes > std::numeric_limits<uint32_t>::max()) {
      throw InvalidInput(fmt::format("variable '{}' has {} bytes; model.bin stores at most 4 GiB per variable", name, bytes));
    }
    if (!written.insert(name).second) throw InvalidInput(fmt::format("variable '{}' is given twice", name));
    put_string(name, "variable name");
    put(static_cast<uint8_t>(tensor.dim()));
    for (int64_t dim : tensor.sizes()) put(static_cast<uint32_t>(dim));
    put(*id);
    put(static_cast<uint32_t>(bytes));
    const at::Tensor contiguous = tensor.to(at::kCPU).contiguous();
    out.append(static_cast<const char*>(contiguous.const_data_ptr()), bytes);
  }
  put(static_cast<uint32_t>(aliases.size()));
  for (const auto& [alias, target] : aliases) {
    if (!written.count(target)) throw InvalidInput(fmt::format("alias '{}' names '{}', which is not written", alias, target));
    put_string(alias, "alias");
    put_string(target, "alias target");
  }
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(out.data(), static_cast<std::streamsize>(out.size()));
  if (!file.flush()) throw IoError(fmt::format("cannot write {}", path.string()));
}

// --- Whisper -----------------------------------------------------------------------------
namespace {

// Scalar attributes of a WhisperSpec and the values this conversion supports.
struct FlagRule {
  const char* name;
  std::vector<int64_t> accepted;
  const char* meaning;
};
const std::vector<FlagRule> kWhisperFlags = {
    {"decoder/activation", {3}, "GELU (CTranslate2 ActivationType 3)"},
    {"decoder/alibi", {0}, "no ALiBi"},
    {"decoder/pre_norm", {1}, "pre-norm blocks"},
    {"decoder/scale_embeddings", {0}, "unscaled token embeddings"},
    {"decoder/start_from_zero_embedding", {0}, "no zero start embedding"},
};
// Scalars that carry no weight (alignment settings are kept in generation_config.json).
const std::set<std::string> kIgnoredScalars = {"decoder/alignment_heads", "decoder/alignment_layer",
                                               "decoder/num_heads", "encoder/num_heads"};

struct WhisperDims {
  int64_t d_model, n_mels, vocab, encoder_layers, decoder_layers, encoder_ffn, decoder_ffn, encoder_heads,
      decoder_heads, max_source, max_target;
  bool tied;
};

int64_t count_layers(const CTranslate2Model& model, const std::string& stack) {
  const std::regex pattern(stack + "/layer_(\\d+)/.*");
  int64_t count = 0;
  std::smatch match;
  for (const auto& name : model.names()) {
    if (std::regex_match(name, match, pattern)) count = std::max<int64_t>(count, std::stoll(match[1].str()) + 1);
  }
  return count;
}

int64_t dim_of(const CTranslate2Model& model, const std::string& name, int64_t axis) {
  const at::Tensor& tensor = model.get(name);
  if (tensor.dim() <= axis) {
    throw InvalidInput(fmt::format("CTranslate2 Whisper variable '{}' has shape {}; expected at least {} dims", name,
                                   tensor.sizes(), axis + 1));
  }
  return tensor.size(axis);
}

void require_whisper(const CTranslate2Model& model) {
  if (model.spec_name() != "WhisperSpec") {
    throw InvalidInput(fmt::format("the CTranslate2 model is a '{}', not a WhisperSpec",
                                   model.spec_name().empty() ? "(v1, unnamed) spec" : model.spec_name()));
  }
}

WhisperDims whisper_dims(const CTranslate2Model& model) {
  require_whisper(model);
  for (const auto& rule : kWhisperFlags) {
    auto value = model.get_int_optional(rule.name);
    if (value && std::find(rule.accepted.begin(), rule.accepted.end(), *value) == rule.accepted.end()) {
      throw InvalidInput(fmt::format("CTranslate2 Whisper attribute '{}' is {}; SpeechLens's Whisper supports {} ({})",
                                     rule.name, *value, fmt::join(rule.accepted, " or "), rule.meaning));
    }
  }
  WhisperDims d{};
  d.d_model = dim_of(model, "encoder/conv1/weight", 0);
  d.n_mels = dim_of(model, "encoder/conv1/weight", 1);
  d.vocab = dim_of(model, "decoder/embeddings/weight", 0);
  d.encoder_layers = count_layers(model, "encoder");
  d.decoder_layers = count_layers(model, "decoder");
  if (d.encoder_layers == 0 || d.decoder_layers == 0) {
    throw InvalidInput(fmt::format("the CTranslate2 Whisper model has {} encoder and {} decoder layers; both must be > 0",
                                   d.encoder_layers, d.decoder_layers));
  }
  d.encoder_ffn = dim_of(model, "encoder/layer_0/ffn/linear_0/weight", 0);
  d.decoder_ffn = dim_of(model, "decoder/layer_0/ffn/linear_0/weight", 0);
  d.encoder_heads = model.get_int("encoder/num_heads");
  d.decoder_heads = model.get_int("decoder/num_heads");
  if (d.encoder_heads <= 0 || d.decoder_heads <= 0 || d.d_model % d.encoder_heads || d.d_model % d.decoder_heads) {
    throw InvalidInput(fmt::format("head counts {} / {} do not divide d_model {}", d.encoder_heads, d.decoder_heads,
                                   d.d_model));
  }
  d.max_source = dim_of(model, "encoder/position_encodings/encodings", 0);
  d.max_target = dim_of(model, "decoder/position_encodings/encodings", 0);
  auto alias = model.aliases().find("decoder/projection/weight");
  d.tied = !model.contains("decoder/projection/weight") ||
           (alias != model.aliases().end() && alias->second == "decoder/embeddings/weight");
  return d;
}

// Collects HF tensors from CTranslate2 variables, checking each shape and remembering what was
// used so that leftovers can be reported.
class WhisperMapper {
 public:
  WhisperMapper(const CTranslate2Model& model, at::ScalarType dtype) : model_(model), dtype_(dtype) {}

  at::Tensor take(const std::string& name, std::vector<int64_t> shape) {
    at::Tensor value = model_.get_float(name);
    if (value.sizes() != at::IntArrayRef(shape)) {
      throw InvalidInput(fmt::format("CTranslate2 Whisper variable '{}' has shape {}; expected {}", name, value.sizes(),
                                     shape));
    }
    used_.insert(name);
    used_.insert(name + "_scale");
    return value;
  }
  void put(const std::string& hf_name, const at::Tensor& value) { out_.emplace_back(hf_name, value.to(dtype_).contiguous()); }

  void linear(const std::string& ct2, const std::string& hf, int64_t out_dim, int64_t in_dim) {
    put(hf + ".weight", take(ct2 + "/weight", {out_dim, in_dim}));
    put(hf + ".bias", take(ct2 + "/bias", {out_dim}));
  }
  void layer_norm(const std::string& ct2, const std::string& hf, int64_t dim) {
    put(hf + ".weight", take(ct2 + "/gamma", {dim}));
    put(hf + ".bias", take(ct2 + "/beta", {dim}));
  }
  // A fused projection [parts * dim, in] split into HF projections; "k_proj" gets no bias.
  void split(const std::string& ct2, const std::string& hf_scope, const std::vector<std::string>& parts, int64_t dim) {
    const auto count = static_cast<int64_t>(parts.size());
    auto weights = take(ct2 + "/weight", {count * dim, dim}).chunk(count, 0);
    auto biases = take(ct2 + "/bias", {count * dim}).chunk(count, 0);
    for (int64_t i = 0; i < count; ++i) {
      put(hf_scope + "." + parts[i] + ".weight", weights[i]);
      if (parts[i] != "k_proj") put(hf_scope + "." + parts[i] + ".bias", biases[i]);
    }
  }

  std::vector<std::pair<std::string, at::Tensor>> finish() {
    std::vector<std::string> leftovers;
    for (const auto& name : model_.names()) {
      const bool flag = std::any_of(kWhisperFlags.begin(), kWhisperFlags.end(),
                                    [&](const FlagRule& rule) { return name == rule.name; });
      if (!used_.count(name) && !flag && !kIgnoredScalars.count(name)) leftovers.push_back(name);
    }
    if (!leftovers.empty()) {
      throw InvalidInput(fmt::format("the CTranslate2 Whisper model has variables this conversion does not know: {}",
                                     fmt::join(leftovers, ", ")));
    }
    return std::move(out_);
  }

 private:
  const CTranslate2Model& model_;
  at::ScalarType dtype_;
  std::set<std::string> used_;
  std::vector<std::pair<std::string, at::Tensor>> out_;
};

// Special token ids by content: tokenizer.json's added_tokens, else vocabulary.txt (one token a
// line, the line number being the id), as CTranslate2 folders hold one or the other.
std::map<std::string, int64_t> special_token_ids(const fs::path& dir) {
  std::map<std::string, int64_t> ids;
  if (fs::is_regular_file(dir / "tokenizer.json")) {
    const auto tokenizer = detail::read_json_file(dir / "tokenizer.json", false);
    for (const auto& token : tokenizer.value("added_tokens", nlohmann::json::array())) {
      ids[token.at("content").get<std::string>()] = token.at("id").get<int64_t>();
    }
  } else if (fs::is_regular_file(dir / "vocabulary.txt")) {
    std::ifstream in(dir / "vocabulary.txt");
    std::string line;
    for (int64_t id = 0; std::getline(in, line); ++id) {
      if (line.size() > 4 && line.rfind("<|", 0) == 0 && line.substr(line.size() - 2) == "|>") ids[line] = id;
    }
  } else {
    throw IoError(fmt::format("{} has neither tokenizer.json nor vocabulary.txt; the Whisper special token ids "
                              "cannot be known",
                              dir.string()));
  }
  return ids;
}

int64_t special_id(const std::map<std::string, int64_t>& ids, const std::string& content, const fs::path& dir) {
  auto it = ids.find(content);
  if (it == ids.end()) throw InvalidInput(fmt::format("the tokenizer in {} has no {} token", dir.string(), content));
  return it->second;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> whisper_hf_state_dict(const CTranslate2Model& model,
                                                                     at::ScalarType dtype) {
  const WhisperDims d = whisper_dims(model);
  WhisperMapper map(model, dtype);
  const int64_t D = d.d_model;
  map.put("model.encoder.conv1.weight", map.take("encoder/conv1/weight", {D, d.n_mels, 3}));
  map.put("model.encoder.conv1.bias", map.take("encoder/conv1/bias", {D}));
  map.put("model.encoder.conv2.weight", map.take("encoder/conv2/weight", {D, D, 3}));
  map.put("model.encoder.conv2.bias", map.take("encoder/conv2/bias", {D}));
  map.put("model.encoder.embed_positions.weight", map.take("encoder/position_encodings/encodings", {d.max_source, D}));
  // Both stacks' blocks share the self-attention (fused qkv) and feed-forward layouts.
  auto self_attention = [&](const std::string& ct2, const std::string& hf) {
    map.layer_norm(ct2 + "/self_attention/layer_norm", hf + ".self_attn_layer_norm", D);
    map.split(ct2 + "/self_attention/linear_0", hf + ".self_attn", {"q_proj", "k_proj", "v_proj"}, D);
    map.linear(ct2 + "/self_attention/linear_1", hf + ".self_attn.out_proj", D, D);
  };
  auto feed_forward = [&](const std::string& ct2, const std::string& hf, int64_t ffn) {
    map.layer_norm(ct2 + "/ffn/layer_norm", hf + ".final_layer_norm", D);
    map.linear(ct2 + "/ffn/linear_0", hf + ".fc1", ffn, D);
    map.linear(ct2 + "/ffn/linear_1", hf + ".fc2", D, ffn);
  };
  for (int64_t i = 0; i < d.encoder_layers; ++i) {
    const std::string ct2 = fmt::format("encoder/layer_{}", i), hf = fmt::format("model.encoder.layers.{}", i);
    self_attention(ct2, hf);
    feed_forward(ct2, hf, d.encoder_ffn);
  }
  map.layer_norm("encoder/layer_norm", "model.encoder.layer_norm", D);

  map.put("model.decoder.embed_tokens.weight", map.take("decoder/embeddings/weight", {d.vocab, D}));
  map.put("model.decoder.embed_positions.weight", map.take("decoder/position_encodings/encodings", {d.max_target, D}));
  for (int64_t i = 0; i < d.decoder_layers; ++i) {
    const std::string ct2 = fmt::format("decoder/layer_{}", i), hf = fmt::format("model.decoder.layers.{}", i);
    self_attention(ct2, hf);
    map.layer_norm(ct2 + "/attention/layer_norm", hf + ".encoder_attn_layer_norm", D);
    map.linear(ct2 + "/attention/linear_0", hf + ".encoder_attn.q_proj", D, D);
    map.split(ct2 + "/attention/linear_1", hf + ".encoder_attn", {"k_proj", "v_proj"}, D);
    map.linear(ct2 + "/attention/linear_2", hf + ".encoder_attn.out_proj", D, D);
    feed_forward(ct2, hf, d.decoder_ffn);
  }
  map.layer_norm("decoder/layer_norm", "model.decoder.layer_norm", D);
  if (!d.tied) {
    map.put("proj_out.weight", map.take("decoder/projection/weight", {d.vocab, D}));
  } else if (model.contains("decoder/projection/weight") && !model.aliases().count("decoder/projection/weight")) {
    map.take("decoder/projection/weight", {d.vocab, D});  // stored copy of the tied embedding
  }
  return map.finish();
}

nlohmann::json whisper_hf_generation_config(const CTranslate2Model& model, const fs::path& ct2_dir) {
  const WhisperDims d = whisper_dims(model);
  const auto ids = special_token_ids(ct2_dir);
  auto id = [&](const std::string& content) { return special_id(ids, content, ct2_dir); };
  nlohmann::json ct2_config = nlohmann::json::object();
  if (fs::is_regular_file(ct2_dir / "config.json")) {
    ct2_config = detail::read_json_file(ct2_dir / "config.json", false);
  } else {
    log::warn(fmt::format("{} has no config.json: the converted Whisper will suppress no tokens", ct2_dir.string()));
  }
  // OpenAI: English-only vocabularies have 51864 ids, multilingual ones 51865 or more.
  const bool multilingual = d.vocab >= 51865;
  const int64_t sot = id("<|startoftranscript|>"), eot = id("<|endoftext|>"),
                no_timestamps = id("<|notimestamps|>");
  nlohmann::json g = {
      {"begin_suppress_tokens", ct2_config.value("suppress_ids_begin", nlohmann::json::array())},
      {"bos_token_id", sot},
      {"decoder_start_token_id", sot},
      {"eos_token_id", eot},
      {"is_multilingual", multilingual},
      {"max_initial_timestamp_index", 50},
      {"max_length", d.max_target},
      {"no_timestamps_token_id", no_timestamps},
      {"pad_token_id", eot},
      {"prev_sot_token_id", id("<|startofprev|>")},
      {"return_timestamps", false},
      {"suppress_tokens", ct2_config.value("suppress_ids", nlohmann::json::array())},
  };
  if (ct2_config.contains("alignment_heads")) g["alignment_heads"] = ct2_config["alignment_heads"];
  if (multilingual) {
    nlohmann::json lang_to_id = nlohmann::json::object();
    for (const auto& lang_id : ct2_config.value("lang_ids", nlohmann::json::array())) {
      for (const auto& [content, value] : ids) {
        if (value == lang_id.get<int64_t>()) lang_to_id[content] = value;
      }
    }
    g["lang_to_id"] = lang_to_id;
    g["task_to_id"] = {{"transcribe", id("<|transcribe|>")}, {"translate", id("<|translate|>")}};
    g["forced_decoder_ids"] = {{1, nullptr}, {2, id("<|transcribe|>")}, {3, no_timestamps}};
  } else {
    g["forced_decoder_ids"] = {{1, no_timestamps}};
  }
  return g;
}

nlohmann::json whisper_hf_config(const CTranslate2Model& model, const nlohmann::json& generation) {
  const WhisperDims d = whisper_dims(model);
  // The layout of the config.json files HF publishes for OpenAI's checkpoints, which also
  // carry the generation settings.
  return {
      {"activation_dropout", 0.0},
      {"activation_function", "gelu"},
      {"architectures", {"WhisperForConditionalGeneration"}},
      {"attention_dropout", 0.0},
      {"begin_suppress_tokens", generation.at("begin_suppress_tokens")},
      {"bos_token_id", generation.at("bos_token_id")},
      {"d_model", d.d_model},
      {"decoder_attention_heads", d.decoder_heads},
      {"decoder_ffn_dim", d.decoder_ffn},
      {"decoder_layerdrop", 0.0},
      {"decoder_layers", d.decoder_layers},
      {"decoder_start_token_id", generation.at("decoder_start_token_id")},
      {"dropout", 0.0},
      {"encoder_attention_heads", d.encoder_heads},
      {"encoder_ffn_dim", d.encoder_ffn},
      {"encoder_layerdrop", 0.0},
      {"encoder_layers", d.encoder_layers},
      {"eos_token_id", generation.at("eos_token_id")},
      {"init_std", 0.02},
      {"is_encoder_decoder", true},
      {"max_source_positions", d.max_source},
      {"max_target_positions", d.max_target},
      {"model_type", "whisper"},
      {"num_hidden_layers", d.encoder_layers},
      {"num_mel_bins", d.n_mels},
      {"pad_token_id", generation.at("pad_token_id")},
      {"scale_embedding", false},
      {"suppress_tokens", generation.at("suppress_tokens")},
      {"tie_word_embeddings", d.tied},
      {"torch_dtype", "float32"},
      {"use_cache", true},
      {"vocab_size", d.vocab},
  };
}

namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw IoError(fmt::format("cannot write {}", path.string()));
}

nlohmann::json whisper_preprocessor_config(int64_t n_mels) {
  return {
      {"chunk_length", 30},         {"feature_extractor_type", "WhisperFeatureExtractor"},
      {"feature_size", n_mels},     {"hop_length", 160},
      {"n_fft", 400},               {"n_samples", 480000},
      {"nb_max_frames", 3000},      {"padding_side", "right"},
      {"padding_value", 0.0},       {"processor_class", "WhisperProcessor"},
      {"return_attention_mask", false}, {"sampling_rate", 16000},
  };
}

}  // namespace

void convert_ctranslate2_whisper(const fs::path& ct2_dir, const fs::path& out_dir, at::ScalarType dtype) {
  if (fs::exists(out_dir)) {
    throw InvalidInput(fmt::format("{} already exists; remove it or pick another output folder", out_dir.string()));
  }
  const auto model = CTranslate2Model::read(ct2_dir);
  const auto generation = whisper_hf_generation_config(model, ct2_dir);
  const auto config = whisper_hf_config(model, generation);
  const auto state_dict = whisper_hf_state_dict(model, dtype);

  fs::path staging = out_dir;
  staging += fmt::format(".partial-{}", ::getpid());
  fs::remove_all(staging);
  fs::create_directories(staging);
  try {
    save_safetensors(staging / "model.safetensors", state_dict, {{"format", "pt"}});
    write_text(staging / "config.json", config.dump(2) + "\n");
    write_text(staging / "generation_config.json", generation.dump(2) + "\n");
    write_text(staging / "preprocessor_config.json",
               whisper_preprocessor_config(config.at("num_mel_bins").get<int64_t>()).dump(2) + "\n");
    if (fs::is_regular_file(ct2_dir / "tokenizer.json")) {
      fs::copy_file(ct2_dir / "tokenizer.json", staging / "tokenizer.json");
    }
    fs::rename(staging, out_dir);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
  log::info(fmt::format("converted the CTranslate2 Whisper model {} into {}", ct2_dir.string(), out_dir.string()));
}

}  // namespace speechlens::io
