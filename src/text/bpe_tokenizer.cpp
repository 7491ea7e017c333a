#include "speechlens/text/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "speechlens/text/unicode.h"
#include "speechlens/util/error.h"
#include "split_patterns.h"

namespace speechlens::text {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using detail::SplitPattern;

// GPT-2's reversible byte <-> printable-character mapping: bytes that are printable and not
// whitespace map to themselves, the rest to U+0100 and up, so BPE never sees a space or a
// control character.
struct ByteLevelAlphabet {
  std::array<char32_t, 256> byte_to_char{};
  std::unordered_map<char32_t, std::uint8_t> char_to_byte;

  ByteLevelAlphabet() {
    char32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      byte_to_char[b] = printable ? static_cast<char32_t>(b) : next_extra++;
      char_to_byte[byte_to_char[b]] = static_cast<std::uint8_t>(b);
    }
  }
};

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open tokenizer file {}", path.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw IoError(fmt::format("cannot read tokenizer file {}", path.string()));
  return buffer.str();
}

json read_json(const fs::path& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw InvalidInput(fmt::format("{} is not valid JSON: {}", path.string(), e.what()));
  }
}

// Reads a field with a clear message on a wrong type.
template <typename T>
T get_field(const json& object, const char* key, const T& fallback, const fs::path& file) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw InvalidInput(fmt::format("{}: field \"{}\" has the wrong type ({})", file.string(), key,
                                   it->type_name()));
  }
}

// Added tokens are located with a byte trie, leftmost-longest, as HF's aho-corasick does.
class AddedTokenTrie {
 public:
  void insert(std::string_view content, std::size_t token_index) {
    std::size_t node = 0;
    for (char c : content) {
      auto [it, inserted] = nodes_[node].children.try_emplace(static_cast<unsigned char>(c), 0);
      if (inserted) {
        it->second = nodes_.size();
        nodes_.emplace_back();
      }
      node = it->second;
    }
    nodes_[node].token_index = static_cast<std::ptrdiff_t>(token_index);
  }
  bool empty() const { return nodes_.size() == 1; }

  // The longest token starting at `pos`: (token index, length) or nullopt.
  std::optional<std::pair<std::size_t, std::size_t>> longest_at(std::string_view text,
                                                                std::size_t pos) const {
    std::optional<std::pair<std::size_t, std::size_t>> best;
    std::size_t node = 0;
    for (std::size_t i = pos; i < text.size(); ++i) {
      auto it = nodes_[node].children.find(static_cast<unsigned char>(text[i]));
      if (it == nodes_[node].children.end()) break;
      node = it->second;
      if (nodes_[node].token_index >= 0) {
        best.emplace(static_cast<std::size_t>(nodes_[node].token_index), i + 1 - pos);
      }
    }
    return best;
  }

 private:
  struct Node {
    std::map<unsigned char, std::size_t> children;
    std::ptrdiff_t token_index = -1;
  };
  std::vector<Node> nodes_{Node{}};
};

// A span of text: either an added token (token_index set) or text still to be tokenised.
struct Segment {
  std::string text;
  std::optional<std::size_t> token_index;
};

// Last code point before byte offset `end` / first at `begin` (text is valid UTF-8).
char32_t code_point_before(std::string_view text, std::size_t end) {
  std::size_t begin = end - 1;
  while (begin > 0 && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) --begin;
  return utf8_to_code_points(text.substr(begin, end - begin)).front();
}
char32_t code_point_at(std::string_view text, std::size_t begin) {
  std::size_t end = begin + 1;
  while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
  return utf8_to_code_points(text.substr(begin, end - begin)).front();
}
bool is_word_character(char32_t c) { return is_letter(c) || is_number(c) || c == U'_'; }

constexpr std::size_t kWordCacheCapacity = 10000;

}  // namespace

struct BpeTokenizer::Impl {
  struct Merge {
    std::uint32_t rank;
    std::int64_t merged_id;
  };

  std::unordered_map<std::string, std::int64_t> vocab;  // byte-level token -> id
  std::vector<std::string> id_to_token;                 // dense; "" where no token
  std::vector<bool> id_present;
  std::unordered_map<std::uint64_t, Merge> merges;      // (left id, right id) -> merge
  std::array<std::int64_t, 256> byte_token_id{};        // id of each single byte, -1 if none
  std::optional<std::int64_t> unk_id;
  bool ignore_merges = false;

  std::vector<AddedToken> added;
  std::unordered_map<std::string, std::size_t> added_by_content;
  std::unordered_set<std::int64_t> special_ids;
  std::unordered_map<std::int64_t, std::size_t> added_by_id;
  AddedTokenTrie raw_trie;         // added tokens matched before normalisation
  AddedTokenTrie normalized_trie;  // added tokens matched in the normalised text

  bool nfc = false;
  bool add_prefix_space = false;
  std::vector<SplitPattern> splits;  // applied in order

  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<std::int64_t>> cache;

  static std::uint64_t pair_key(std::int64_t a, std::int64_t b) {
    return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b);
  }

  void set_token(std::int64_t id, const std::string& token) {
    if (id < 0) throw InvalidInput(fmt::format("token \"{}\" has a negative id {}", token, id));
    if (static_cast<std::size_t>(id) >= id_to_token.size()) {
      id_to_token.resize(static_cast<std::size_t>(id) + 1);
      id_present.resize(static_cast<std::size_t>(id) + 1, false);
    }
    id_to_token[static_cast<std::size_t>(id)] = token;
    id_present[static_cast<std::size_t>(id)] = true;
  }

  void set_vocab(std::unordered_map<std::string, std::int64_t> v) {
    vocab = std::move(v);
    for (const auto& [token, id] : vocab) set_token(id, token);
    const auto& alphabet = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, alphabet.byte_to_char[b]);
      auto it = vocab.find(ch);
      byte_token_id[b] = it == vocab.end() ? -1 : it->second;
    }
  }

  void add_merge(const std::string& left, const std::string& right, const std::string& where) {
    auto l = vocab.find(left), r = vocab.find(right), m = vocab.find(left + right);
    if (l == vocab.end() || r == vocab.end() || m == vocab.end()) {
      throw InvalidInput(fmt::format(
          "{}: merge \"{} {}\" uses a token missing from the vocabulary; the vocab and merges "
          "files do not belong together",
          where, left, right));
    }
    merges.try_emplace(pair_key(l->second, r->second),
                       Merge{static_cast<std::uint32_t>(merges.size()), m->second});
  }

  void add_token(AddedToken token) {
    if (added_by_content.count(token.content)) return;
    set_token(token.id, token.content);
    if (token.special) special_ids.insert(token.id);
    added_by_id[token.id] = added.size();
    added_by_content[token.content] = added.size();
    (token.normalized ? normalized_trie : raw_trie).insert(token.content, added.size());
    added.push_back(std::move(token));
  }

  // HF's AddedVocabulary split: leftmost-longest matches, honouring single_word/lstrip/rstrip.
  void split_added(const std::string& text, const AddedTokenTrie& trie,
                   std::vector<Segment>& out) const {
    if (trie.empty()) {
      out.push_back({text, std::nullopt});
      return;
    }
    std::size_t emitted = 0;  // text before this offset is already in `out`
    std::size_t pos = 0;
    while (pos < text.size()) {
      auto match = trie.longest_at(text, pos);
      if (!match) {
        ++pos;
        continue;
      }
      const AddedToken& token = added[match->first];
      std::size_t start = pos, stop = pos + match->second;
      pos = stop;
      if (token.single_word) {
        const bool word_before = start > 0 && is_word_character(code_point_before(text, start));
        const bool word_after =
            stop < text.size() && is_word_character(code_point_at(text, stop));
        if (word_before || word_after) continue;
      }
      if (token.lstrip) {
        while (start > emitted && is_whitespace(code_point_before(text, start))) {
          do --start;
          while ((static_cast<unsigned char>(text[start]) & 0xC0) == 0x80);
        }
      }
      if (token.rstrip) {
        while (stop < text.size() && is_whitespace(code_point_at(text, stop))) {
          ++stop;
          while (stop < text.size() && (static_cast<unsigned char>(text[stop]) & 0xC0) == 0x80)
            ++stop;
        }
        pos = stop;
      }
      if (emitted < start) out.push_back({text.substr(emitted, start - emitted), std::nullopt});
      out.push_back({text.substr(start, stop - start), match->first});
      emitted = stop;
    }
    if (emitted < text.size()) out.push_back({text.substr(emitted), std::nullopt});
  }

  // Raw text -> added-token segments and normalised text segments.
  std::vector<Segment> segment(std::string_view text) const {
    utf8_to_code_points(text);  // validates before anything else sees the text
    std::vector<Segment> raw;
    split_added(std::string(text), raw_trie, raw);
    std::vector<Segment> out;
    for (Segment& seg : raw) {
      if (seg.token_index) {
        out.push_back(std::move(seg));
        continue;
      }
      split_added(nfc ? normalize_nfc(seg.text) : seg.text, normalized_trie, out);
    }
    return out;
  }

  // Pre-tokenisation of one normalised, added-token-free segment into UTF-8 words.
  std::vector<std::string> words(const std::string& text) const {
    std::u32string cps = utf8_to_code_points(text);
    if (add_prefix_space && !cps.empty() && cps.front() != U' ') cps.insert(cps.begin(), U' ');
    std::vector<std::u32string> pieces{cps};
    for (SplitPattern pattern : splits) {
      std::vector<std::u32string> next;
      for (const auto& piece : pieces) {
        for (auto [b, e] : detail::split_with_pattern(piece, pattern)) {
          next.push_back(piece.substr(b, e - b));
        }
      }
      pieces = std::move(next);
    }
    std::vector<std::string> out;
    out.reserve(pieces.size());
    for (const auto& piece : pieces) {
      if (!piece.empty()) out.push_back(code_points_to_utf8(piece));
    }
    return out;
  }

  static std::string to_byte_level(std::string_view word) {
    std::string out;
    for (char c : word) append_utf8(out, byte_level_alphabet().byte_to_char[static_cast<unsigned char>(c)]);
    return out;
  }

  // BPE on one word (UTF-8 bytes), lowest merge rank first, leftmost on ties: the order HF's
  // tokenizers and GPT-2's reference implementation both follow.
  std::vector<std::int64_t> bpe(std::string_view word) const {
    if (ignore_merges) {
      auto it = vocab.find(to_byte_level(word));
      if (it != vocab.end()) return {it->second};
    }
    struct Symbol {
      std::int64_t id;
      std::ptrdiff_t prev, next;
      bool alive;
    };
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    for (char c : word) {
      const std::int64_t id = byte_token_id[static_cast<unsigned char>(c)];
      if (id < 0 && !unk_id) continue;  // HF drops characters it cannot represent
      const auto index = static_cast<std::ptrdiff_t>(symbols.size());
      symbols.push_back({id < 0 ? *unk_id : id, index - 1, index + 1, true});
    }
    if (symbols.empty()) return {};
    symbols.back().next = -1;

    struct Candidate {
      std::uint32_t rank;
      std::ptrdiff_t pos;
      std::int64_t left, right;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto push_pair = [&](std::ptrdiff_t pos) {
      if (pos < 0) return;
      const std::ptrdiff_t next = symbols[pos].next;
      if (next < 0) return;
      auto it = merges.find(pair_key(symbols[pos].id, symbols[next].id));
      if (it != merges.end()) queue.push({it->second.rank, pos, symbols[pos].id, symbols[next].id});
    };
    for (std::ptrdiff_t i = 0; i + 1 < static_cast<std::ptrdiff_t>(symbols.size()); ++i) push_pair(i);

    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.pos];
      if (!left.alive || left.next < 0 || left.id != top.left) continue;
      Symbol& right = symbols[left.next];
      if (right.id != top.right) continue;  // stale: one side merged since it was queued
      left.id = merges.at(pair_key(top.left, top.right)).merged_id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.pos;
      push_pair(left.prev);
      push_pair(top.pos);
    }
    std::vector<std::int64_t> ids;
    for (std::ptrdiff_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
    return ids;
  }

  void encode_word(const std::string& word, std::vector<std::int64_t>& out) const {
    {
      std::shared_lock lock(cache_mutex);
      auto it = cache.find(word);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<std::int64_t> ids = bpe(word);
    out.insert(out.end(), ids.begin(), ids.end());
    std::unique_lock lock(cache_mutex);
    if (cache.size() < kWordCacheCapacity) cache.emplace(word, std::move(ids));
  }
};

namespace {

void configure_pre_tokenizer(BpeTokenizer::Impl& impl, const json& node, const fs::path& file,
                             bool& byte_level_seen) {
  const std::string type = get_field<std::string>(node, "type", "", file);
  if (type == "Sequence") {
    for (const json& child : node.at("pretokenizers")) {
      configure_pre_tokenizer(impl, child, file, byte_level_seen);
    }
  } else if (type == "ByteLevel") {
    if (byte_level_seen) throw InvalidInput(fmt::format("{}: two ByteLevel pre-tokenizers", file.string()));
    byte_level_seen = true;
    impl.add_prefix_space = get_field<bool>(node, "add_prefix_space", false, file);
    if (get_field<bool>(node, "use_regex", true, file)) impl.splits.push_back(SplitPattern::kGpt2);
  } else if (type == "Split") {
    if (byte_level_seen) {
      throw InvalidInput(fmt::format(
          "{}: a Split pre-tokenizer after ByteLevel is not supported (it would see byte-level "
          "characters)",
          file.string()));
    }
    const json& pattern = node.at("pattern");
    const std::string regex = pattern.contains("Regex") ? pattern["Regex"].get<std::string>() : "";
    const auto split = detail::split_pattern_from_regex(regex);
    const std::string behavior = get_field<std::string>(node, "behavior", "", file);
    if (!split || behavior != "Isolated" || get_field<bool>(node, "invert", false, file)) {
      throw InvalidInput(fmt::format(
          "{}: unsupported Split pre-tokenizer (pattern {}, behavior {}); supported: an Isolated, "
          "non-inverted split with GPT-2's regex {} or Qwen2's regex {}",
          file.string(), pattern.dump(), behavior, detail::split_pattern_regex(SplitPattern::kGpt2),
          detail::split_pattern_regex(SplitPattern::kQwen2)));
    }
    impl.splits.push_back(*split);
  } else {
    throw InvalidInput(fmt::format(
        "{}: pre-tokenizer type \"{}\" is not supported (byte-level BPE needs ByteLevel, "
        "optionally after a regex Split)",
        file.string(), type));
  }
}

void configure_normalizer(BpeTokenizer::Impl& impl, const json& node, const fs::path& file) {
  if (node.is_null()) return;
  const std::string type = get_field<std::string>(node, "type", "", file);
  if (type == "Sequence") {
    for (const json& child : node.at("normalizers")) configure_normalizer(impl, child, file);
  } else if (type == "NFC") {
    impl.nfc = true;
  } else {
    throw InvalidInput(fmt::format(
        "{}: normalizer \"{}\" is not supported (only NFC, as Qwen2 uses)", file.string(), type));
  }
}

AddedToken added_token_from_json(const json& node, std::int64_t id, const fs::path& file) {
  AddedToken token;
  token.id = id;
  token.content = node.at("content").get<std::string>();
  token.special = get_field<bool>(node, "special", false, file);
  token.normalized = get_field<bool>(node, "normalized", !token.special, file);
  token.lstrip = get_field<bool>(node, "lstrip", false, file);
  token.rstrip = get_field<bool>(node, "rstrip", false, file);
  token.single_word = get_field<bool>(node, "single_word", false, file);
  return token;
}

std::unordered_map<std::string, std::int64_t> vocab_from_json(const json& node,
                                                              const fs::path& file) {
  if (!node.is_object()) throw InvalidInput(fmt::format("{}: the vocabulary is not a JSON object", file.string()));
  std::unordered_map<std::string, std::int64_t> vocab;
  vocab.reserve(node.size());
  for (const auto& [token, id] : node.items()) {
    if (!id.is_number_integer()) {
      throw InvalidInput(fmt::format("{}: vocabulary entry \"{}\" has a non-integer id", file.string(), token));
    }
    vocab.emplace(token, id.get<std::int64_t>());
  }
  return vocab;
}

void split_merge_line(const std::string& line, std::string& left, std::string& right,
                      const std::string& where) {
  const auto space = line.find(' ');
  if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
    throw InvalidInput(fmt::format("{}: merge \"{}\" is not two tokens separated by one space", where, line));
  }
  left = line.substr(0, space);
  right = line.substr(space + 1);
}

}  // namespace

BpeTokenizer::BpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

BpeTokenizer BpeTokenizer::from_tokenizer_json(const fs::path& file) {
  const json root = read_json(file);
  auto impl = std::make_unique<Impl>();
  const json& model = root.at("model");
  const std::string model_type = get_field<std::string>(model, "type", "BPE", file);
  if (model_type != "BPE") {
    throw InvalidInput(fmt::format("{}: model type \"{}\" is not BPE", file.string(), model_type));
  }
  if (get_field<double>(model, "dropout", 0.0, file) > 0.0 ||
      !get_field<std::string>(model, "continuing_subword_prefix", "", file).empty() ||
      !get_field<std::string>(model, "end_of_word_suffix", "", file).empty() ||
      get_field<bool>(model, "byte_fallback", false, file)) {
    throw InvalidInput(fmt::format(
        "{}: BPE dropout, continuing_subword_prefix, end_of_word_suffix and byte_fallback are "
        "not supported (byte-level BPE models do not use them)",
        file.string()));
  }
  impl->ignore_merges = get_field<bool>(model, "ignore_merges", false, file);
  impl->set_vocab(vocab_from_json(model.at("vocab"), file));
  if (auto unk = get_field<std::string>(model, "unk_token", "", file); !unk.empty()) {
    auto it = impl->vocab.find(unk);
    if (it != impl->vocab.end()) impl->unk_id = it->second;
  }
  const std::string where = file.string();
  for (const json& merge : model.at("merges")) {
    std::string left, right;
    if (merge.is_string()) {
      split_merge_line(merge.get<std::string>(), left, right, where);
    } else if (merge.is_array() && merge.size() == 2) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      throw InvalidInput(fmt::format("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", where, merge.dump()));
    }
    impl->add_merge(left, right, where);
  }
  configure_normalizer(*impl, root.value("normalizer", json()), file);
  bool byte_level_seen = false;
  if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null()) {
    configure_pre_tokenizer(*impl, root["pre_tokenizer"], file, byte_level_seen);
  }
  if (!byte_level_seen) {
    throw InvalidInput(fmt::format(
        "{}: no ByteLevel pre-tokenizer; only byte-level BPE tokenizers are supported", where));
  }
  if (root.contains("decoder") && !root["decoder"].is_null() &&
      root["decoder"].value("type", "") != "ByteLevel") {
    throw InvalidInput(fmt::format("{}: decoder \"{}\" is not supported (expected ByteLevel)",
                                   where, root["decoder"].value("type", "")));
  }
  for (const json& token : root.value("added_tokens", json::array())) {
    impl->add_token(added_token_from_json(token, token.at("id").get<std::int64_t>(), file));
  }
  return BpeTokenizer(std::move(impl));
}

BpeTokenizer BpeTokenizer::from_dir(const fs::path& dir) {
  if (fs::is_regular_file(dir / "tokenizer.json")) return from_tokenizer_json(dir / "tokenizer.json");
  const fs::path vocab_file = dir / "vocab.json", merges_file = dir / "merges.txt";
  if (!fs::is_regular_file(vocab_file) || !fs::is_regular_file(merges_file)) {
    throw IoError(fmt::format(
        "no tokenizer in {}: expected tokenizer.json, or vocab.json and merges.txt", dir.string()));
  }
  auto impl = std::make_unique<Impl>();
  impl->set_vocab(vocab_from_json(read_json(vocab_file), vocab_file));
  {
    std::istringstream lines(read_file(merges_file));
    std::string line, left, right;
    std::size_t number = 0;
    while (std::getline(lines, line)) {
      ++number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
      const std::string where = fmt::format("{}:{}", merges_file.string(), number);
      split_merge_line(line, left, right, where);
      impl->add_merge(left, right, where);
    }
  }
  const fs::path config_file = dir / "tokenizer_config.json";
  const json config = fs::is_regular_file(config_file) ? read_json(config_file) : json::object();
  // The slow tokenizer classes hard-code their pre-tokenisation; Qwen2's adds NFC.
  const std::string tokenizer_class = get_field<std::string>(config, "tokenizer_class", "", config_file);
  const bool qwen2 = tokenizer_class.rfind("Qwen2", 0) == 0;
  impl->nfc = qwen2;
  impl->splits.push_back(qwen2 ? SplitPattern::kQwen2 : SplitPattern::kGpt2);
  impl->add_prefix_space = get_field<bool>(config, "add_prefix_space", false, config_file);

  // Added tokens: tokenizer_config's added_tokens_decoder is the full description; older
  // checkpoints list them in added_tokens.json and mark the special ones in
  // special_tokens_map.json.
  std::unordered_set<std::string> special_contents;
  std::unordered_map<std::string, json> special_flags;
  const fs::path special_map_file = dir / "special_tokens_map.json";
  std::vector<json> special_sources{config};
  if (fs::is_regular_file(special_map_file)) special_sources.push_back(read_json(special_map_file));
  for (const json& source : special_sources) {
    for (const auto& [key, value] : source.items()) {
      const bool special_key = key.size() > 6 && key.compare(key.size() - 6, 6, "_token") == 0;
      auto content_of = [](const json& v) -> std::string {
        if (v.is_string()) return v.get<std::string>();
        if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
        return "";
      };
      if (special_key) {
        if (auto c = content_of(value); !c.empty()) {
          special_contents.insert(c);
          // RoBERTa-style entries carry the token's lstrip/rstrip flags.
          if (value.is_object()) special_flags[c] = value;
        }
      } else if (key == "additional_special_tokens" && value.is_array()) {
        for (const json& v : value) {
          if (auto c = content_of(v); !c.empty()) special_contents.insert(c);
        }
      }
    }
  }
  std::map<std::int64_t, AddedToken> tokens;
  if (config.contains("added_tokens_decoder")) {
    for (const auto& [id_text, node] : config["added_tokens_decoder"].items()) {
      const std::int64_t id = std::stoll(id_text);
      tokens.emplace(id, added_token_from_json(node, id, config_file));
    }
  }
  const fs::path added_file = dir / "added_tokens.json";
  if (fs::is_regular_file(added_file)) {
    const json added_json = read_json(added_file);
    for (const auto& [content, id] : added_json.items()) {
      const std::int64_t token_id = id.get<std::int64_t>();
      if (tokens.count(token_id)) continue;
      AddedToken token;
      if (auto flags = special_flags.find(content); flags != special_flags.end()) {
        json node = flags->second;
        node["special"] = true;
        token = added_token_from_json(node, token_id, special_map_file);
      } else {
        token.id = token_id;
        token.content = content;
        token.special = special_contents.count(content) > 0;
        token.normalized = !token.special;
      }
      tokens.emplace(token_id, token);
    }
  }
  for (const std::string& content : special_contents) {
    auto it = impl->vocab.find(content);
    if (it == impl->vocab.end() || tokens.count(it->second)) continue;
    AddedToken token;
    token.id = it->second;
    token.content = content;
    token.special = true;
    tokens.emplace(token.id, token);
  }
  for (auto& [id, token] : tokens) impl->add_token(std::move(token));
  return BpeTokenizer(std::move(impl));
}

std::vector<std::int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<std::int64_t> ids;
  for (const Segment& seg : impl_->segment(text)) {
    if (seg.token_index) {
      ids.push_back(impl_->added[*seg.token_index].id);
      continue;
    }
    for (const std::string& word : impl_->words(seg.text)) impl_->encode_word(word, ids);
  }
  return ids;
}

std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  for (const Segment& seg : impl_->segment(text)) {
    if (seg.token_index) {
      pieces.push_back(seg.text);
      continue;
    }
    for (std::string& word : impl_->words(seg.text)) pieces.push_back(std::move(word));
  }
  return pieces;
}

std::string BpeTokenizer::decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens,
                                 bool strict) const {
  const auto& alphabet = byte_level_alphabet();
  std::string bytes;
  for (std::int64_t id : ids) {
    if (!has_id(id)) {
      if (strict) {
        throw InvalidInput(fmt::format("decode: id {} is outside the vocabulary (size {})", id,
                                       vocab_size()));
      }
      continue;
    }
    if (skip_special_tokens && impl_->special_ids.count(id)) continue;
    const std::string& token = impl_->id_to_token[static_cast<std::size_t>(id)];
    // As HF's ByteLevel decoder: a token made only of byte-level characters turns back into its
    // bytes; any other token (an added token such as "<|en|>" with a space or CJK) is kept as is.
    const std::u32string cps = utf8_to_code_points(token);
    std::string token_bytes;
    bool byte_level = true;
    for (char32_t cp : cps) {
      auto it = alphabet.char_to_byte.find(cp);
      if (it == alphabet.char_to_byte.end()) {
        byte_level = false;
        break;
      }
      token_bytes.push_back(static_cast<char>(it->second));
    }
    bytes += byte_level ? token_bytes : token;
  }
  // Invalid UTF-8 (a multi-byte character cut between tokens) becomes U+FFFD per maximal
  // invalid subpart, as Rust's String::from_utf8_lossy does.
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto lead = static_cast<unsigned char>(bytes[i]);
    std::size_t length = lead < 0x80 ? 1 : (lead >= 0xC2 && lead <= 0xDF) ? 2
                                         : (lead >= 0xE0 && lead <= 0xEF) ? 3
                                         : (lead >= 0xF0 && lead <= 0xF4) ? 4 : 0;
    std::size_t valid = length == 0 ? 0 : 1;
    for (std::size_t k = 1; k < length && i + k < bytes.size(); ++k) {
      const auto b = static_cast<unsigned char>(bytes[i + k]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (k == 1) {
        if (lead == 0xE0) lo = 0xA0;
        if (lead == 0xED) hi = 0x9F;
        if (lead == 0xF0) lo = 0x90;
        if (lead == 0xF4) hi = 0x8F;
      }
      if (b < lo || b > hi) break;
      ++valid;
    }
    if (length != 0 && valid == length) {
      out.append(bytes, i, length);
      i += length;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<std::size_t>(valid, 1);
    }
  }
  return out;
}

std::optional<std::int64_t> BpeTokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(std::string(token)); it != impl_->added_by_content.end()) {
    return impl_->added[it->second].id;
  }
  if (auto it = impl_->vocab.find(std::string(token)); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

bool BpeTokenizer::has_id(std::int64_t id) const {
  return id >= 0 && static_cast<std::size_t>(id) < impl_->id_present.size() &&
         impl_->id_present[static_cast<std::size_t>(id)];
}

std::string BpeTokenizer::id_to_token(std::int64_t id) const {
  if (!has_id(id)) {
    throw NameError(fmt::format("token id {} is not in the vocabulary (ids 0..{})", id, vocab_size() - 1));
  }
  return impl_->id_to_token[static_cast<std::size_t>(id)];
}

std::int64_t BpeTokenizer::vocab_size() const {
  return static_cast<std::int64_t>(impl_->id_to_token.size());
}

bool BpeTokenizer::is_special(std::int64_t id) const { return impl_->special_ids.count(id) > 0; }

const std::vector<AddedToken>& BpeTokenizer::added_tokens() const { return impl_->added; }

bool BpeTokenizer::normalizes_nfc() const { return impl_->nfc; }

std::string BpeTokenizer::split_regex() const {
  std::string out;
  for (SplitPattern p : impl_->splits) {
    if (!out.empty()) out += " then ";
    out += detail::split_pattern_regex(p);
  }
  return out;
}

}  // namespace speechlens::text
