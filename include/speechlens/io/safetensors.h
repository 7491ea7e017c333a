#pragma once
// The safetensors format (https://github.com/huggingface/safetensors), read through a private
// memory mapping and written with the layout the reference implementation produces.
//
// Reading validates the whole header before anything is mapped or allocated, so a corrupt or
// hostile file fails with speechlens::InvalidInput and never crashes or reads out of bounds.
// Tensors handed out by SafetensorsFile::get() are zero-copy views of the mapping whenever the
// data is aligned for its dtype; see get() for the write semantics.
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace speechlens::io {

// One entry of the header. Offsets are relative to the start of the data buffer, which begins
// right after the 8-byte length prefix and the JSON header.
struct SafetensorsTensorInfo {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Validates the header and maps the file. Throws IoError when the file cannot be opened or
  // mapped and InvalidInput when it is not a well-formed safetensors file.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const;
  std::vector<std::string> names() const;  // sorted
  size_t size() const;                     // number of tensors
  bool contains(const std::string& name) const;
  // The following throw speechlens::NameError for a name the file does not hold.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  at::ScalarType dtype(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;

  // The tensor on CPU. When its bytes are aligned for the dtype (always the case for files
  // written by the reference writer or ours) the result is a zero-copy view of the mapping that
  // keeps the mapping alive; otherwise it is a fresh copy.
  //
  // The mapping is MAP_PRIVATE with PROT_READ|PROT_WRITE: an in-place write to a view is
  // copy-on-write, it never reaches the file and never faults. Views of the same tensor share
  // memory, though (two get() calls of one name return aliases of the same pages, as two
  // torch.load(mmap=True) results of one storage would), so clone() a tensor before writing to
  // it in place when other holders must keep seeing the stored values.
  at::Tensor get(const std::string& name) const;

  // The "__metadata__" string map of the header (empty when absent).
  const std::map<std::string, std::string>& metadata() const;

  // The mapped data buffer (after the header): lets callers and tests tell a view from a copy.
  const std::byte* data_begin() const;
  uint64_t data_size() const;
  bool is_view_of_mapping(const at::Tensor& tensor) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

// Writes `tensors` in the safetensors format, readable by Python's safetensors.torch.load_file.
// As the reference writer does, the data is laid out by element size (largest first) then name,
// so every tensor is aligned for its dtype, and the JSON header is padded with spaces to a
// multiple of 8 bytes. Tensors may live on any device and have any strides; they are written as
// contiguous CPU bytes. Throws InvalidInput for duplicate names, undefined or sparse tensors and
// dtypes safetensors cannot store, and IoError when the file cannot be written. The file is
// written next to `path` under a temporary name and renamed into place, so a failed save never
// leaves a truncated file behind.
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string ("F32", "BF16", ...) of a torch scalar type, and back. The
// supported set is the one Python's safetensors.torch maps (F64 F32 F16 BF16 I64 I32 I16 I8 U64
// U32 U16 U8 BOOL C64 F8_E4M3 F8_E5M2 F8_E4M3FNUZ F8_E5M2FNUZ). Throw InvalidInput otherwise.
std::string_view safetensors_dtype_name(at::ScalarType dtype);
at::ScalarType safetensors_dtype_from_name(std::string_view name);

}  // namespace speechlens::io
