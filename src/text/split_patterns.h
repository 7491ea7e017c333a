#pragma once
// Hand-written matchers for the pre-tokenizer regexes of byte-level BPE tokenizers. HF's
// tokenizers run them through Oniguruma; std::regex has no \p{L}/\p{N}, so each pattern is
// implemented as the leftmost-first alternation it is, over code points.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace speechlens::text::detail {

enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kQwen2,
};

// The pattern a regex string from tokenizer.json denotes, or nullopt for one not implemented.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);
std::string_view split_pattern_regex(SplitPattern pattern);

// Splits text into the pieces the regex matches, plus (as HF's Isolated split does) any
// non-matching gaps; returns [begin, end) code point offsets covering the whole text.
std::vector<std::pair<std::size_t, std::size_t>> split_with_pattern(std::u32string_view text,
                                                                     SplitPattern pattern);

}  // namespace speechlens::text::detail
