#include "speechlens/io/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>

#include "io/io_test_util.h"
#include "speechlens/util/error.h"

namespace speechlens::io {
namespace {

using testing::le64;
using testing::read_bytes;
using testing::safetensors_bytes;
using testing::ScratchDir;
using testing::write_bytes;

// Opening must fail with InvalidInput whose message contains `expected`.
void expect_invalid(const std::filesystem::path& path, const std::string& expected) {
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << "opened a file that should be rejected (" << expected << ")";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find(expected), std::string::npos)
        << "message: " << error.what() << "\nexpected to contain: " << expected;
  }
}

struct HostileCase {
  std::string label;
  std::string bytes;
  std::string expected_message;
};

// Test listings name a case by its label rather than dumping its bytes.
void PrintTo(const HostileCase& c, std::ostream* os) { *os << c.label; }

std::string entry(const std::string& dtype, const std::string& shape, uint64_t begin, uint64_t end) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

std::vector<HostileCase> hostile_cases() {
  const std::string ok_a = "\"a\":" + entry("F32", "[2]", 0, 8);
  return {
      {"empty_file", "", "shorter than the 8-byte header length"},
      {"seven_bytes", std::string(7, '\0'), "shorter than the 8-byte header length"},
      {"header_over_100MB", le64(100'000'001) + "{}", "above the 100000000-byte limit"},
      {"header_longer_than_file", le64(64) + "{}", "only 2 bytes follow"},
      {"header_length_max_u64", le64(UINT64_MAX) + "{}", "above the"},
      {"empty_header", le64(0), "does not start with '{'"},
      {"header_not_object", safetensors_bytes("[]", 0), "does not start with '{'"},
      {"leading_space", safetensors_bytes(" {}", 0), "does not start with '{'"},
      {"truncated_json", safetensors_bytes("{\"a\":{\"dtype\"", 0), "not valid JSON"},
      {"invalid_utf8", safetensors_bytes("{\"a\xff\xfe\":" + entry("F32", "[0]", 0, 0) + "}", 0),
       "not valid JSON"},
      {"trailing_garbage", safetensors_bytes("{}x", 0), "not valid JSON"},
      {"duplicate_tensor", safetensors_bytes("{" + ok_a + "," + ok_a + "}", 8),
       "repeats the key \"a\""},
      {"duplicate_field",
       safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[2],"
                         "\"data_offsets\":[0,8]}}", 8),
       "repeats the key \"dtype\""},
      {"entry_not_object", safetensors_bytes("{\"a\":[1,2]}", 0), "is not an object"},
      {"missing_dtype", safetensors_bytes("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
       "has no \"dtype\""},
      {"missing_offsets", safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8),
       "has no \"data_offsets\""},
      {"unknown_dtype", safetensors_bytes("{\"a\":" + entry("F128", "[2]", 0, 32) + "}", 32),
       "unknown dtype \"F128\""},
      {"dtype_not_string", safetensors_bytes("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":"
                                             "[0,8]}}", 8),
       "dtype of tensor \"a\" is not a string"},
      {"shape_not_array", safetensors_bytes("{\"a\":" + entry("F32", "2", 0, 8) + "}", 8),
       "shape of tensor \"a\" is not an array"},
      {"negative_dim", safetensors_bytes("{\"a\":" + entry("F32", "[-2]", 0, 8) + "}", 8),
       "dimensions must be non-negative integers"},
      {"fractional_dim", safetensors_bytes("{\"a\":" + entry("F32", "[2.5]", 0, 8) + "}", 8),
       "dimensions must be non-negative integers"},
      {"string_dim", safetensors_bytes("{\"a\":" + entry("F32", "[\"2\"]", 0, 8) + "}", 8),
       "dimensions must be non-negative integers"},
      {"dim_above_int64", safetensors_bytes("{\"a\":" + entry("U8", "[9223372036854775808]", 0, 0) +
                                            "}", 0),
       "dimensions must be non-negative integers"},
      {"numel_overflow",
       safetensors_bytes("{\"a\":" + entry("U8", "[4294967296,4294967296,2]", 0, 0) + "}", 0),
       "element count of tensor \"a\""},
      {"nbytes_overflow",
       safetensors_bytes("{\"a\":" + entry("F64", "[4611686018427387904]", 0, 0) + "}", 0),
       "byte size of tensor \"a\""},
      {"offsets_reversed", safetensors_bytes("{\"a\":" + entry("F32", "[0]", 8, 0) + "}", 8),
       "begin after end"},
      {"offsets_three",
       safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8),
       "expected [begin, end]"},
      {"offsets_negative",
       safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8),
       "expected [begin, end]"},
      {"offsets_size_mismatch", safetensors_bytes("{\"a\":" + entry("F32", "[3]", 0, 8) + "}", 8),
       "needs 12 bytes"},
      {"gap", safetensors_bytes("{" + ok_a + ",\"b\":" + entry("F32", "[1]", 12, 16) + "}", 16),
       "starts at data offset 12 but the previous tensor ends at 8"},
      {"overlap", safetensors_bytes("{" + ok_a + ",\"b\":" + entry("F32", "[2]", 4, 12) + "}", 12),
       "starts at data offset 4"},
      {"not_from_zero", safetensors_bytes("{\"a\":" + entry("F32", "[2]", 4, 12) + "}", 12),
       "starts at data offset 4 but the previous tensor ends at 0"},
      {"trailing_bytes", safetensors_bytes("{" + ok_a + "}", 9),
       "cover 8 bytes but the data buffer holds 9"},
      {"data_past_end", safetensors_bytes("{" + ok_a + "}", 4),
       "cover 8 bytes but the data buffer holds 4"},
      {"offsets_past_u64", safetensors_bytes("{\"a\":" + entry("U8", "[0]", UINT64_MAX, UINT64_MAX) +
                                             "}", 0),
       "starts at data offset 18446744073709551615"},
      {"metadata_not_string",
       safetensors_bytes("{\"__metadata__\":{\"k\":1}," + ok_a + "}", 8),
       "__metadata__ value of \"k\" is 1"},
      {"metadata_not_object", safetensors_bytes("{\"__metadata__\":[\"k\"]," + ok_a + "}", 8),
       "__metadata__ is not an object"},
  };
}

class HostileFile : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileFile, IsRejectedWithAClearMessage) {
  ScratchDir dir;
  const auto path = dir / "hostile.safetensors";
  write_bytes(path, GetParam().bytes);
  expect_invalid(path, GetParam().expected_message);
}

INSTANTIATE_TEST_SUITE_P(Safetensors, HostileFile, ::testing::ValuesIn(hostile_cases()),
                         [](const auto& info) { return info.param.label; });

TEST(Safetensors, MissingFileIsAnIoError) {
  ScratchDir dir;
  EXPECT_THROW(SafetensorsFile::open(dir / "absent.safetensors"), IoError);
}

TEST(Safetensors, DirectoryIsRejected) {
  ScratchDir dir;
  expect_invalid(dir.path(), "not a regular file");
}

TEST(Safetensors, BoolBytesOtherThanZeroAndOneAreRejectedOnGet) {
  ScratchDir dir;
  const auto path = dir / "bool.safetensors";
  std::string header = "{\"flags\":" + entry("BOOL", "[3]", 0, 3) + "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  write_bytes(path, le64(header.size()) + header + std::string("\x01\x00\x02", 3));
  const auto file = SafetensorsFile::open(path);
  try {
    file.get("flags");
    ADD_FAILURE() << "a BOOL byte of 2 was accepted";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("bytes other than 0 and 1"), std::string::npos);
  }
}

// Every truncation and many random corruptions of a valid file either open cleanly or throw
// InvalidInput; none may crash or read out of bounds (run under SPEECHLENS_SANITIZE to see).
TEST(Safetensors, CorruptedFilesNeverCrash) {
  ScratchDir dir;
  const auto valid_path = dir / "valid.safetensors";
  save_safetensors(valid_path, {{"w", at::arange(6, at::kFloat).reshape({2, 3})},
                                {"b", at::arange(3, at::kShort)},
                                {"z", at::zeros({0}, at::kDouble)}},
                   {{"k", "v"}});
  const std::string valid = read_bytes(valid_path);
  const auto path = dir / "corrupt.safetensors";
  auto open_and_read_all = [&] {
    try {
      const auto file = SafetensorsFile::open(path);
      for (const auto& name : file.names()) file.get(name).sum();
    } catch (const InvalidInput&) {
    }
  };
  for (size_t length = 0; length < valid.size(); ++length) {
    write_bytes(path, valid.substr(0, length));
    EXPECT_THROW(SafetensorsFile::open(path), InvalidInput) << "truncated to " << length;
  }
  std::mt19937 random(7);
  for (int trial = 0; trial < 400; ++trial) {
    std::string bytes = valid;
    const int flips = 1 + trial % 3;
    for (int i = 0; i < flips; ++i) {
      bytes[random() % bytes.size()] = static_cast<char>(random() & 0xff);
    }
    write_bytes(path, bytes);
    open_and_read_all();
  }
}

// ---------------------------------------------------------------------------------------------

std::vector<std::pair<std::string, at::Tensor>> one_of_every_dtype() {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  const at::Tensor base = at::arange(-6, 6, at::kDouble).reshape({3, 4});
  for (const auto dtype :
       {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort,
        at::kChar, at::kFloat8_e4m3fn, at::kFloat8_e5m2, at::kFloat8_e4m3fnuz,
        at::kFloat8_e5m2fnuz, at::kComplexFloat}) {
    tensors.emplace_back(std::string("t_") + std::string(safetensors_dtype_name(dtype)),
                         base.to(dtype));
  }
  for (const auto dtype : {at::kByte, at::kUInt16, at::kUInt32, at::kUInt64}) {
    tensors.emplace_back(std::string("t_") + std::string(safetensors_dtype_name(dtype)),
                         (base + 6).to(at::kLong).to(dtype));
  }
  tensors.emplace_back("t_BOOL", base.gt(0));
  return tensors;
}

bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  if (a.numel() == 0) return true;
  const auto bytes = [](const at::Tensor& t) {
    return t.contiguous().reshape({-1}).view(at::kByte);
  };
  return at::equal(bytes(a), bytes(b));
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  ScratchDir dir;
  auto tensors = one_of_every_dtype();
  tensors.emplace_back("scalar", at::scalar_tensor(2.5, at::kFloat));
  tensors.emplace_back("empty", at::zeros({0, 7}, at::kHalf));
  tensors.emplace_back("empty_too", at::zeros({3, 0}, at::kLong));
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "ünïcödé"}};
  save_safetensors(dir / "all.safetensors", tensors, metadata);

  const auto file = SafetensorsFile::open(dir / "all.safetensors");
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.size(), tensors.size());
  const auto names = file.names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const auto& [name, tensor] : tensors) {
    ASSERT_TRUE(file.contains(name)) << name;
    EXPECT_EQ(file.dtype(name), tensor.scalar_type()) << name;
    EXPECT_EQ(file.shape(name), tensor.sizes().vec()) << name;
    const at::Tensor loaded = file.get(name);
    EXPECT_TRUE(bitwise_equal(loaded, tensor)) << name;
    // The writer aligns every tensor, so every non-empty tensor comes back as a view.
    EXPECT_EQ(file.is_view_of_mapping(loaded), tensor.numel() > 0) << name;
  }
  EXPECT_FALSE(file.contains("absent"));
}

TEST(Safetensors, WriterPadsTheHeaderToEightBytesWithSpaces) {
  ScratchDir dir;
  for (int name_length = 1; name_length <= 8; ++name_length) {
    const auto path = dir / "padded.safetensors";
    save_safetensors(path, {{std::string(name_length, 'n'), at::ones({1})}});
    const std::string bytes = read_bytes(path);
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | uint8_t(bytes[i]);
    EXPECT_EQ(header_size % 8, 0u);
    EXPECT_EQ(bytes.size(), 8 + header_size + 4);
    const std::string header = bytes.substr(8, header_size);
    EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  }
}

TEST(Safetensors, WriterTakesAnyStridesAndConjugates) {
  ScratchDir dir;
  const at::Tensor base = at::arange(12, at::kFloat).reshape({3, 4});
  const at::Tensor transposed = base.t();
  const at::Tensor strided = base.index({at::indexing::Slice(), at::indexing::Slice(0, 4, 2)});
  const at::Tensor conjugated = at::complex(base, base).conj();
  save_safetensors(dir / "views.safetensors",
                   {{"transposed", transposed}, {"strided", strided}, {"conj", conjugated}});
  const auto file = SafetensorsFile::open(dir / "views.safetensors");
  EXPECT_TRUE(at::equal(file.get("transposed"), transposed));
  EXPECT_TRUE(at::equal(file.get("strided"), strided));
  EXPECT_TRUE(at::equal(file.get("conj"), conjugated.resolve_conj()));
}

TEST(Safetensors, WriterRejectsWhatTheFormatCannotHold) {
  ScratchDir dir;
  const auto path = dir / "bad.safetensors";
  EXPECT_THROW(save_safetensors(path, {{"a", at::ones({1})}, {"a", at::ones({2})}}), InvalidInput);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", at::ones({1})}}), InvalidInput);
  EXPECT_THROW(save_safetensors(path, {{"a", at::Tensor()}}), InvalidInput);
  EXPECT_THROW(save_safetensors(path, {{"a", at::ones({2}, at::kComplexDouble)}}), InvalidInput);
  EXPECT_THROW(save_safetensors(path, {{"a", at::ones({2, 2}).to_sparse()}}), InvalidInput);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_THROW(save_safetensors(dir / "no_such_dir" / "x.safetensors", {{"a", at::ones({1})}}),
               IoError);
}

TEST(Safetensors, UnknownNameIsANameErrorWithNearNames) {
  ScratchDir dir;
  save_safetensors(dir / "n.safetensors",
                   {{"encoder.layers.0.fc1.weight", at::ones({1})},
                    {"encoder.layers.0.fc2.weight", at::ones({1})}});
  const auto file = SafetensorsFile::open(dir / "n.safetensors");
  try {
    file.get("encoder.layers.0.fc3.weight");
    ADD_FAILURE() << "unknown name accepted";
  } catch (const NameError& error) {
    EXPECT_NE(std::string(error.what()).find("encoder.layers.0.fc1.weight"), std::string::npos);
  }
  EXPECT_THROW(file.shape("nope"), NameError);
  EXPECT_THROW(file.dtype("nope"), NameError);
}

// ---------------------------------------------------------------------------------------------

// A header length that is not a multiple of 4 puts an F32 tensor off its alignment: get() must
// then copy (a misaligned float* is undefined behaviour), and the copy must hold the same values.
TEST(Safetensors, MisalignedDataIsCopiedAlignedDataIsAView) {
  ScratchDir dir;
  const std::string header = "{\"odd\":" + entry("F32", "[2]", 0, 8) + ",\"u8\":" +
                             entry("U8", "[3]", 8, 11) + "}";
  ASSERT_NE((8 + header.size()) % 4, 0u);
  std::string data(11, '\0');
  const float values[2] = {1.5f, -2.25f};
  std::memcpy(data.data(), values, sizeof values);
  data[8] = 7, data[9] = 8, data[10] = 9;
  write_bytes(dir / "odd.safetensors", le64(header.size()) + header + data);

  const auto file = SafetensorsFile::open(dir / "odd.safetensors");
  const at::Tensor odd = file.get("odd");
  EXPECT_FALSE(file.is_view_of_mapping(odd));
  EXPECT_TRUE(at::equal(odd, at::tensor({1.5f, -2.25f})));
  const at::Tensor bytes = file.get("u8");  // one-byte elements are always aligned
  EXPECT_TRUE(file.is_view_of_mapping(bytes));
  EXPECT_TRUE(at::equal(bytes, at::tensor({7, 8, 9}, at::kByte)));
}

TEST(Safetensors, ViewsShareMemoryAndOutliveTheFileObject) {
  ScratchDir dir;
  save_safetensors(dir / "v.safetensors", {{"w", at::arange(1000, at::kFloat)}});
  at::Tensor first;
  at::Tensor second;
  {
    const auto file = SafetensorsFile::open(dir / "v.safetensors");
    first = file.get("w");
    second = file.get("w");
    EXPECT_EQ(first.data_ptr(), second.data_ptr());
    const auto* data = static_cast<const std::byte*>(first.data_ptr());
    EXPECT_GE(data, file.data_begin());
    EXPECT_LE(data + 4000, file.data_begin() + file.data_size());
  }
  // The file object is gone; the mapping lives on in the tensors' deleters.
  EXPECT_TRUE(at::equal(first, at::arange(1000, at::kFloat)));
}

TEST(Safetensors, InPlaceWritesAreCopyOnWriteAndNeverReachTheFile) {
  ScratchDir dir;
  const auto path = dir / "cow.safetensors";
  save_safetensors(path, {{"w", at::zeros({256}, at::kFloat)}});
  const std::string before = read_bytes(path);
  {
    const auto file = SafetensorsFile::open(path);
    at::Tensor view = file.get("w");
    view.add_(1.0);
    EXPECT_TRUE(at::equal(file.get("w"), at::ones({256})));  // aliases see the write
  }
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TRUE(at::equal(SafetensorsFile::open(path).get("w"), at::zeros({256})));
}

TEST(Safetensors, DtypeNamesRoundTrip) {
  for (const auto& [name, tensor] : one_of_every_dtype()) {
    const auto dtype_name = safetensors_dtype_name(tensor.scalar_type());
    EXPECT_EQ(safetensors_dtype_from_name(dtype_name), tensor.scalar_type());
  }
  EXPECT_THROW(safetensors_dtype_from_name("F128"), InvalidInput);
  EXPECT_THROW(safetensors_dtype_name(at::kComplexDouble), InvalidInput);
}

// ---------------------------------------------------------------------------------------------
// Files written by Python's safetensors (tests/fixtures/io_fixtures.py).

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::stoi(hex.substr(2 * i, 2), nullptr, 16);
  return bytes;
}

TEST(SafetensorsFromPython, EveryDtypeMatchesWhatPythonWrote) {
  const auto data_dir = testing::test_data_dir() / "io";
  if (!std::filesystem::exists(data_dir / "dtypes.safetensors")) {
    GTEST_FAIL() << "run tests/fixtures/make_fixtures.py and set SPEECHLENS_TEST_DATA";
  }
  const auto expected = nlohmann::json::parse(read_bytes(data_dir / "dtypes_expected.json"));
  const auto file = SafetensorsFile::open(data_dir / "dtypes.safetensors");
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(file.metadata(), expected["metadata"].get<StringMap>());
  EXPECT_EQ(file.size(), expected["tensors"].size());
  size_t dtypes_seen = 0;
  for (const auto& [name, want] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(file.contains(name));
    EXPECT_EQ(std::string(safetensors_dtype_name(file.dtype(name))), want["dtype"].get<std::string>());
    EXPECT_EQ(file.shape(name), want["shape"].get<std::vector<int64_t>>());
    const at::Tensor tensor = file.get(name);
    const auto bytes = from_hex(want["hex"].get<std::string>());
    ASSERT_EQ(size_t(tensor.nbytes()), bytes.size());
    if (!bytes.empty()) {
      EXPECT_EQ(std::memcmp(tensor.data_ptr(), bytes.data(), bytes.size()), 0);
      EXPECT_TRUE(file.is_view_of_mapping(tensor));
    }
    if (want.contains("values")) {
      const auto values = want["values"].get<std::vector<double>>();
      const at::Tensor as_double = tensor.reshape({-1}).to(at::kDouble);
      EXPECT_TRUE(at::equal(as_double, at::tensor(values, at::kDouble)));
    }
    dtypes_seen += name.rfind("every_dtype.", 0) == 0;
  }
  EXPECT_EQ(dtypes_seen, 18u);
}

}  // namespace
}  // namespace speechlens::io
