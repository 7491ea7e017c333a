// Ids and text identical to HF tokenizers, read from text/expected.json written by
// tests/fixtures/text_fixtures.py (SPEECHLENS_TEST_DATA).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "io/io_test_util.h"
#include <nlohmann/json.hpp>

#include "speechlens/text/bpe_tokenizer.h"
#include "speechlens/text/unicode.h"
#include "speechlens/text/whisper_tokenizer.h"
#include "speechlens/util/error.h"

namespace {

namespace fs = std::filesystem;
using speechlens::text::BpeTokenizer;
using speechlens::text::WhisperTokenizer;

fs::path text_data_dir() { return speechlens::io::testing::test_data_dir() / "text"; }

nlohmann::json expected_cases() {
  std::ifstream in(text_data_dir() / "expected.json");
  return nlohmann::json::parse(in);
}

class TokenizerParity : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(TokenizerParity, IdsAndTextMatchHf) {
  const auto& [kind, form] = GetParam();
  if (!fs::exists(text_data_dir() / "expected.json")) GTEST_FAIL() << "run make_fixtures.py first";
  const auto expected = expected_cases();
  if (!expected.contains(kind)) GTEST_FAIL() << kind << " fixture not written (optional package absent)";
  const BpeTokenizer tok = BpeTokenizer::from_dir(text_data_dir() / form);
  for (const auto& c : expected[kind]) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = c["ids"].get<std::vector<std::int64_t>>();
    EXPECT_EQ(tok.encode(text), ids) << text;
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << text;
    EXPECT_EQ(tok.decode(ids, true), c["decoded_skip_special"].get<std::string>()) << text;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Forms, TokenizerParity,
    ::testing::Values(std::pair<std::string, std::string>{"gpt2", "gpt2-json"},
                      std::pair<std::string, std::string>{"gpt2", "gpt2-slow"},
                      std::pair<std::string, std::string>{"qwen2", "qwen2-json"},
                      std::pair<std::string, std::string>{"qwen2", "qwen2-slow"},
                      std::pair<std::string, std::string>{"whisper-tiny.en", "whisper-tiny.en"}));

TEST(BpeTokenizer, RejectsBadInputWithClearErrors) {
  if (!fs::exists(text_data_dir() / "gpt2-json")) GTEST_FAIL() << "run make_fixtures.py first";
  const BpeTokenizer tok = BpeTokenizer::from_dir(text_data_dir() / "gpt2-json");
  EXPECT_THROW(tok.encode("ab\xff"), speechlens::InvalidInput);
  EXPECT_THROW(tok.encode("\xe6\x97"), speechlens::InvalidInput);  // truncated sequence
  EXPECT_THROW(tok.encode("\xed\xa0\x80"), speechlens::InvalidInput);  // surrogate
  EXPECT_THROW(tok.id_to_token(-1), speechlens::NameError);
  EXPECT_THROW(tok.decode({1 << 30}, false, /*strict=*/true), speechlens::InvalidInput);
  EXPECT_THROW(BpeTokenizer::from_dir(text_data_dir() / "no-such-dir"), speechlens::IoError);
}

TEST(BpeTokenizer, DecodeReplacesBrokenUtf8LikeRust) {
  if (!fs::exists(text_data_dir() / "gpt2-json")) GTEST_FAIL() << "run make_fixtures.py first";
  const BpeTokenizer tok = BpeTokenizer::from_dir(text_data_dir() / "gpt2-json");
  // Byte tokens of "日" (e6 97 a5) cut after two bytes, then "a".
  std::vector<std::int64_t> ids;
  for (const char* byte_token : {"æ", "Ĺ", "a"}) ids.push_back(*tok.token_to_id(byte_token));
  EXPECT_EQ(tok.decode(ids), "\xEF\xBF\xBD" "a");
}

TEST(Unicode, NfcComposesHangulAndReordersMarks) {
  using speechlens::text::normalize_nfc;
  EXPECT_EQ(normalize_nfc("e\xCC\x81"), "\xC3\xA9");                       // e + acute -> é
  EXPECT_EQ(normalize_nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // ᄀ ᅡ ᆨ -> 각
  EXPECT_EQ(normalize_nfc("\xE2\x84\xAB"), "\xC3\x85");                    // Angstrom sign -> Å
  EXPECT_EQ(normalize_nfc("plain ascii"), "plain ascii");
}

TEST(WhisperTokenizer, PromptsAndTimestamps) {
  const fs::path dir = text_data_dir() / "whisper-tiny.en";
  if (!fs::exists(dir)) GTEST_FAIL() << "Whisper tiny.en tokenizer fixture not written";
  const WhisperTokenizer en = WhisperTokenizer::from_dir(dir);
  EXPECT_FALSE(en.multilingual());
  EXPECT_EQ(en.sot_sequence(), (std::vector<std::int64_t>{50257, 50362}));
  EXPECT_EQ(en.sot_sequence(std::nullopt, "transcribe", true), (std::vector<std::int64_t>{50257}));
  EXPECT_THROW(en.sot_sequence("de"), speechlens::InvalidInput);
  EXPECT_EQ(en.timestamp_token(0.5), 50363 + 25);
  EXPECT_EQ(en.id_to_token(50363 + 25), "<|0.50|>");
  const auto hello = en.encode(" Hello");
  std::vector<std::int64_t> ids{en.sot(), en.timestamp_begin()};
  ids.insert(ids.end(), hello.begin(), hello.end());
  ids.push_back(en.timestamp_token(1.0));
  ids.push_back(en.eot());
  EXPECT_EQ(en.decode(ids), " Hello");

  const WhisperTokenizer multi = WhisperTokenizer::from_dir(text_data_dir() / "whisper-multilingual");
  EXPECT_TRUE(multi.multilingual());
  EXPECT_EQ(multi.sot_sequence("german", "translate", false),
            (std::vector<std::int64_t>{50258, 50261, 50358, 50363}));
  EXPECT_THROW(multi.language_token("klingon"), speechlens::NameError);
}

}  // namespace
