#pragma once
// The Unicode pieces the byte-level BPE tokenizers need: UTF-8 <-> code points, the general
// categories \p{L} and \p{N}, White_Space (what \s means in the Oniguruma regexes HF tokenizers
// run) and NFC normalisation (Qwen2's normalizer). Tables come from Python's unicodedata; see
// scripts/gen_unicode_tables.py and unicode_version().
#include <cstdint>
#include <string>
#include <string_view>

namespace speechlens::text {

// Decodes UTF-8; throws InvalidInput naming the byte offset of the first malformed sequence
// (overlong forms, surrogates and code points above U+10FFFF are malformed).
std::u32string utf8_to_code_points(std::string_view utf8);
std::string code_points_to_utf8(std::u32string_view code_points);
// Appends the UTF-8 encoding of one code point.
void append_utf8(std::string& out, char32_t code_point);

bool is_letter(char32_t code_point);      // general category L*
bool is_number(char32_t code_point);      // general category N*
bool is_whitespace(char32_t code_point);  // White_Space property
std::uint8_t canonical_combining_class(char32_t code_point);

// Unicode Normalization Form C of valid UTF-8 (throws InvalidInput on malformed UTF-8).
std::string normalize_nfc(std::string_view utf8);
std::u32string normalize_nfc(std::u32string_view code_points);

// The Unicode version the tables were generated from.
const char* unicode_version();

}  // namespace speechlens::text
