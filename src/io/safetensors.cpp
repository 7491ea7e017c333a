#include "speechlens/io/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "json_util.h"
#include "speechlens/util/error.h"

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; big-endian hosts would need byte swaps");

namespace speechlens::io {
namespace {

// Same cap as the reference reader: a header is a few KB to a few MB in practice.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeEntry {
  std::string_view name;
  at::ScalarType type;
  // Order of the reference implementation's Dtype enum (as observed from safetensors 0.8): its
  // writer lays tensors out by it, descending, and we follow so that our files come out
  // byte-identical to Python's save_file.
  int writer_rank;
};

// The set Python's safetensors.torch maps to torch dtypes.
constexpr std::array<DtypeEntry, 18> kDtypes{{
    {"BOOL", at::kBool, 0},
    {"U8", at::kByte, 1},
    {"I8", at::kChar, 2},
    {"F8_E5M2", at::kFloat8_e5m2, 3},
    {"F8_E4M3", at::kFloat8_e4m3fn, 4},
    {"F8_E4M3FNUZ", at::kFloat8_e4m3fnuz, 5},
    {"F8_E5M2FNUZ", at::kFloat8_e5m2fnuz, 6},
    {"I16", at::kShort, 7},
    {"U16", at::kUInt16, 8},
    {"F16", at::kHalf, 9},
    {"BF16", at::kBFloat16, 10},
    {"I32", at::kInt, 11},
    {"U32", at::kUInt32, 12},
    {"F32", at::kFloat, 13},
    {"C64", at::kComplexFloat, 14},
    {"F64", at::kDouble, 15},
    {"I64", at::kLong, 16},
    {"U64", at::kUInt64, 17},
}};

const DtypeEntry* find_dtype(std::string_view name) {
  for (const auto& entry : kDtypes) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

const DtypeEntry& dtype_entry(at::ScalarType type) {
  for (const auto& entry : kDtypes) {
    if (entry.type == type) return entry;
  }
  throw InvalidInput(fmt::format(
      "safetensors cannot store dtype {}; convert the tensor to a supported dtype first "
      "(F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL C64 and the float8 types)",
      c10::toString(type)));
}

std::string all_dtype_names() {
  std::string names;
  for (const auto& entry : kDtypes) {
    if (!names.empty()) names += ' ';
    names += entry.name;
  }
  return names;
}

// The mapped file; tensors viewing it hold a shared_ptr so it outlives the SafetensorsFile.
struct Mapping {
  void* address = MAP_FAILED;
  size_t length = 0;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping() = default;
  ~Mapping() {
    if (address != MAP_FAILED) ::munmap(address, length);
  }
};

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

void read_exactly(int fd, void* buffer, size_t count, uint64_t offset,
                  const std::filesystem::path& path) {
  auto* out = static_cast<char*>(buffer);
  while (count > 0) {
    const ssize_t got = ::pread(fd, out, count, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw IoError(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
    }
    if (got == 0) {
      throw IoError(fmt::format("{} shrank while being read", path.string()));
    }
    out += got;
    count -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

uint64_t json_unsigned(const nlohmann::json& value) {
  return value.get<uint64_t>();
}

}  // namespace

struct SafetensorsFile::State {
  std::filesystem::path path;
  std::map<std::string, SafetensorsTensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  std::shared_ptr<const Mapping> mapping;
  uint64_t data_offset = 0;  // 8 + header length
  uint64_t data_size = 0;

  [[noreturn]] void invalid(const std::string& what) const {
    throw InvalidInput(fmt::format("{} is not a valid safetensors file: {}", path.string(), what));
  }

  const SafetensorsTensorInfo& lookup(const std::string& name) const;
  void parse_header(const std::string& header);
  SafetensorsTensorInfo parse_entry(const std::string& name, const nlohmann::json& entry) const;
  void check_layout() const;
};

const SafetensorsTensorInfo& SafetensorsFile::State::lookup(const std::string& name) const {
  auto found = tensors.find(name);
  if (found != tensors.end()) return found->second;
  // Names in checkpoints differ by a prefix more often than by a typo: suggest those sharing
  // the longest leading run with the request.
  auto common_prefix = [&](const std::string& other) {
    auto [a, b] = std::mismatch(name.begin(), name.end(), other.begin(), other.end());
    return static_cast<size_t>(a - name.begin());
  };
  size_t best = 0;
  for (const auto& [other, _] : tensors) best = std::max(best, common_prefix(other));
  std::vector<std::string> near;
  for (const auto& [other, _] : tensors) {
    if (best > 0 && common_prefix(other) == best && near.size() < 5) near.push_back(other);
  }
  throw NameError(fmt::format("{} has no tensor named \"{}\" ({} tensors){}", path.string(), name,
                              tensors.size(),
                              near.empty() ? std::string()
                                           : fmt::format("; near names: {}", fmt::join(near, ", "))));
}

SafetensorsTensorInfo SafetensorsFile::State::parse_entry(const std::string& name,
                                                          const nlohmann::json& entry) const {
  if (!entry.is_object()) invalid(fmt::format("the entry of tensor \"{}\" is not an object", name));
  auto field = [&](const char* key) -> const nlohmann::json& {
    auto found = entry.find(key);
    if (found == entry.end()) invalid(fmt::format("tensor \"{}\" has no \"{}\"", name, key));
    return *found;
  };

  const auto& dtype_json = field("dtype");
  if (!dtype_json.is_string()) invalid(fmt::format("the dtype of tensor \"{}\" is not a string", name));
  const DtypeEntry* dtype = find_dtype(dtype_json.get_ref<const std::string&>());
  if (dtype == nullptr) {
    invalid(fmt::format("tensor \"{}\" has unknown dtype \"{}\" (known: {})", name,
                        dtype_json.get_ref<const std::string&>(), all_dtype_names()));
  }

  const auto& shape_json = field("shape");
  if (!shape_json.is_array()) invalid(fmt::format("the shape of tensor \"{}\" is not an array", name));
  SafetensorsTensorInfo info{dtype->type, {}, 0, 0};
  uint64_t numel = 1;
  for (const auto& dim : shape_json) {
    if (!dim.is_number_unsigned() || json_unsigned(dim) > uint64_t(std::numeric_limits<int64_t>::max())) {
      invalid(fmt::format("the shape of tensor \"{}\" is {}; dimensions must be non-negative integers",
                          name, shape_json.dump()));
    }
    const uint64_t size = json_unsigned(dim);
    if (__builtin_mul_overflow(numel, size, &numel)) {
      invalid(fmt::format("the element count of tensor \"{}\" (shape {}) overflows", name,
                          shape_json.dump()));
    }
    info.shape.push_back(static_cast<int64_t>(size));
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(c10::elementSize(dtype->type)), &nbytes) ||
      nbytes > uint64_t(std::numeric_limits<int64_t>::max())) {
    invalid(fmt::format("the byte size of tensor \"{}\" (shape {}, {}) overflows", name,
                        shape_json.dump(), dtype->name));
  }

  const auto& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    invalid(fmt::format("the data_offsets of tensor \"{}\" are {}; expected [begin, end] with "
                        "non-negative integers", name, offsets.dump()));
  }
  info.begin = json_unsigned(offsets[0]);
  info.end = json_unsigned(offsets[1]);
  if (info.begin > info.end) {
    invalid(fmt::format("tensor \"{}\" has data_offsets [{}, {}] with begin after end", name,
                        info.begin, info.end));
  }
  if (info.end - info.begin != nbytes) {
    invalid(fmt::format("tensor \"{}\" spans {} bytes (data_offsets [{}, {}]) but shape {} of {} "
                        "needs {} bytes", name, info.end - info.begin, info.begin, info.end,
                        shape_json.dump(), dtype->name, nbytes));
  }
  return info;
}

void SafetensorsFile::State::parse_header(const std::string& header) {
  if (header.empty() || header.front() != '{') invalid("the JSON header does not start with '{'");
  const nlohmann::json root = detail::parse_json_unique_keys(header, path.string() + " (header)");
  if (!root.is_object()) invalid("the JSON header is not an object");
  for (const auto& [name, entry] : root.items()) {
    if (name == kMetadataKey) {
      if (entry.is_null()) continue;
      if (!entry.is_object()) invalid("__metadata__ is not an object of strings");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          invalid(fmt::format("__metadata__ value of \"{}\" is {}, not a string", key, value.dump()));
        }
        metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    tensors.emplace(name, parse_entry(name, entry));
  }
}

// The data buffer must be tiled exactly by the tensors: no gaps (which would hide data), no
// overlaps (one byte, two meanings) and no trailing bytes, as the reference reader requires.
void SafetensorsFile::State::check_layout() const {
  std::vector<std::pair<const std::string*, const SafetensorsTensorInfo*>> by_offset;
  by_offset.reserve(tensors.size());
  for (const auto& [name, info] : tensors) by_offset.emplace_back(&name, &info);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second->begin, a.second->end) < std::tie(b.second->begin, b.second->end);
  });
  uint64_t cursor = 0;
  for (const auto& [name, info] : by_offset) {
    if (info->begin != cursor) {
      invalid(fmt::format("tensor \"{}\" starts at data offset {} but the previous tensor ends at "
                          "{}; tensors must tile the data buffer without gaps or overlaps",
                          *name, info->begin, cursor));
    }
    cursor = info->end;
  }
  if (cursor != data_size) {
    invalid(fmt::format("the tensors cover {} bytes but the data buffer holds {} bytes", cursor,
                        data_size));
  }
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  auto state = std::make_shared<State>();
  state->path = path;

  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    throw IoError(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  }
  struct stat file_status {};
  if (::fstat(fd.get(), &file_status) != 0) {
    throw IoError(fmt::format("cannot stat {}: {}", path.string(), std::strerror(errno)));
  }
  if (!S_ISREG(file_status.st_mode)) state->invalid("not a regular file");
  const auto file_size = static_cast<uint64_t>(file_status.st_size);
  if (file_size < 8) {
    state->invalid(fmt::format("it is {} bytes long, shorter than the 8-byte header length",
                               file_size));
  }

  uint8_t length_bytes[8];
  read_exactly(fd.get(), length_bytes, sizeof length_bytes, 0, path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
  if (header_size > kMaxHeaderBytes) {
    state->invalid(fmt::format("the header length is {} bytes, above the {}-byte limit",
                               header_size, kMaxHeaderBytes));
  }
  if (header_size > file_size - 8) {
    state->invalid(fmt::format("the header length is {} bytes but only {} bytes follow the "
                               "length prefix", header_size, file_size - 8));
  }
  std::string header(header_size, '\0');
  read_exactly(fd.get(), header.data(), header.size(), 8, path);
  state->data_offset = 8 + header_size;
  state->data_size = file_size - state->data_offset;
  state->parse_header(header);
  state->check_layout();

  // Private and writable: in-place writes to views are copy-on-write, never reach the file and
  // never fault (see the header for the aliasing rule).
  auto mapping = std::make_shared<Mapping>();
  mapping->length = file_size;
  mapping->address =
      ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
  if (mapping->address == MAP_FAILED) {
    throw IoError(fmt::format("cannot map {} ({} bytes): {}", path.string(), file_size,
                              std::strerror(errno)));
  }
  state->mapping = std::move(mapping);

  SafetensorsFile file;
  file.state_ = std::move(state);
  return file;
}

const std::filesystem::path& SafetensorsFile::path() const { return state_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  names.reserve(state_->tensors.size());
  for (const auto& [name, _] : state_->tensors) names.push_back(name);
  return names;
}

size_t SafetensorsFile::size() const { return state_->tensors.size(); }

bool SafetensorsFile::contains(const std::string& name) const {
  return state_->tensors.count(name) != 0;
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  return state_->lookup(name);
}

at::ScalarType SafetensorsFile::dtype(const std::string& name) const {
  return state_->lookup(name).dtype;
}

std::vector<int64_t> SafetensorsFile::shape(const std::string& name) const {
  return state_->lookup(name).shape;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return state_->metadata;
}

const std::byte* SafetensorsFile::data_begin() const {
  return static_cast<const std::byte*>(state_->mapping->address) + state_->data_offset;
}

uint64_t SafetensorsFile::data_size() const { return state_->data_size; }

bool SafetensorsFile::is_view_of_mapping(const at::Tensor& tensor) const {
  if (!tensor.defined() || !tensor.has_storage()) return false;
  const auto* data = static_cast<const std::byte*>(tensor.storage().data());
  return data != nullptr && data >= data_begin() && data < data_begin() + data_size();
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const SafetensorsTensorInfo& info = state_->lookup(name);
  const auto options = at::TensorOptions().dtype(info.dtype).device(at::kCPU);
  const uint64_t nbytes = info.end - info.begin;
  if (nbytes == 0) return at::empty(info.shape, options);

  auto* bytes = const_cast<std::byte*>(data_begin()) + info.begin;
  if (info.dtype == at::kBool) {
    // Any byte but 0 and 1 is an invalid bool to torch kernels; check before handing it out.
    const auto* flags = reinterpret_cast<const uint8_t*>(bytes);
    if (std::any_of(flags, flags + nbytes, [](uint8_t flag) { return flag > 1; })) {
      state_->invalid(fmt::format("BOOL tensor \"{}\" holds bytes other than 0 and 1", name));
    }
  }
  const auto alignment = static_cast<uintptr_t>(c10::elementSize(info.dtype));
  if (reinterpret_cast<uintptr_t>(bytes) % alignment == 0) {
    return at::from_blob(
        bytes, info.shape, [keep_alive = state_->mapping](void*) {}, options);
  }
  at::Tensor copy = at::empty(info.shape, options);
  std::memcpy(copy.data_ptr(), bytes, nbytes);
  return copy;
}

std::string_view safetensors_dtype_name(at::ScalarType dtype) { return dtype_entry(dtype).name; }

at::ScalarType safetensors_dtype_from_name(std::string_view name) {
  const DtypeEntry* entry = find_dtype(name);
  if (entry == nullptr) {
    throw InvalidInput(fmt::format("unknown safetensors dtype \"{}\" (known: {})", name,
                                   all_dtype_names()));
  }
  return entry->type;
}

// ---------------------------------------------------------------------------------------------

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Pending {
    const std::string* name;
    const at::Tensor* tensor;
    const DtypeEntry* dtype;
    uint64_t nbytes;
  };
  std::vector<Pending> pending;
  std::set<std::string_view> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name == kMetadataKey) {
      throw InvalidInput("a tensor cannot be named __metadata__; safetensors reserves that key");
    }
    if (!seen.insert(name).second) {
      throw InvalidInput(fmt::format("tensor name \"{}\" is given twice; names must be unique", name));
    }
    if (!tensor.defined()) throw InvalidInput(fmt::format("tensor \"{}\" is undefined", name));
    if (tensor.layout() != at::kStrided) {
      throw InvalidInput(fmt::format("tensor \"{}\" has layout {}; safetensors stores dense tensors, "
                                     "call to_dense() first", name, c10::toString(tensor.layout())));
    }
    const DtypeEntry& dtype = dtype_entry(tensor.scalar_type());
    pending.push_back({&name, &tensor, &dtype, uint64_t(tensor.numel()) * tensor.element_size()});
  }
  // The reference writer's order: larger dtypes first keeps every tensor aligned for its type.
  std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
    if (a.dtype->writer_rank != b.dtype->writer_rank) return a.dtype->writer_rank > b.dtype->writer_rank;
    return *a.name < *b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& item : pending) {
    nlohmann::ordered_json entry;
    entry["dtype"] = item.dtype->name;
    entry["shape"] = item.tensor->sizes().vec();
    entry["data_offsets"] = {offset, offset + item.nbytes};
    header[*item.name] = std::move(entry);
    offset += item.nbytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  const std::filesystem::path temporary =
      path.string() + fmt::format(".tmp{}", static_cast<long>(::getpid()));
  auto fail = [&](const std::string& what) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw IoError(fmt::format("cannot write {}: {}", path.string(), what));
  };
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail(std::strerror(errno));
    std::array<char, 8> length_bytes{};
    uint64_t length = header_text.size();
    for (auto& byte : length_bytes) {
      byte = static_cast<char>(length & 0xff);
      length >>= 8;
    }
    out.write(length_bytes.data(), length_bytes.size());
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    for (const auto& item : pending) {
      if (item.nbytes == 0) continue;
      // One tensor at a time on the CPU, so saving a GPU model never holds two full copies.
      const at::Tensor bytes =
          item.tensor->to(at::kCPU).resolve_conj().resolve_neg().contiguous();
      out.write(static_cast<const char*>(bytes.const_data_ptr()),
                static_cast<std::streamsize>(item.nbytes));
    }
    out.flush();
    if (!out) fail(std::strerror(errno));
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) fail(error.message());
}

}  // namespace speechlens::io
