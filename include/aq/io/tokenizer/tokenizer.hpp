// The Qwen2/Qwen3 text tokenizer read from a Hugging Face tokenizer.json: added tokens matched
// first, then NFC, the Qwen2 split regex and byte-level BPE; decoding maps ids back to text.
// It turns calibration captions and chat prompts into the ids the model consumes.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/json_field.hpp"
#include "aq/io/mapped_file.hpp"
#include "aq/io/tokenizer/bpe.hpp"
#include "aq/io/tokenizer/nfc.hpp"
#include "aq/io/tokenizer/pretokenizer.hpp"
#include "aq/io/tokenizer/unicode_properties.hpp"
#include "aq/io/tokenizer/utf8.hpp"

namespace aq::io {

// One entry of tokenizer.json's "added_tokens", with its matching flags.
struct added_token {
  std::string content;
  std::uint32_t id = 0;
  bool special = false;      // dropped by decode(..., skip_special = true)
  bool normalized = false;   // matched in NFC text instead of the raw input
  bool lstrip = false;       // swallows white space on its left
  bool rstrip = false;       // swallows white space on its right
  bool single_word = false;  // only matches with no word character on either side
  // The token's text as decoded: the content, NFC-normalized for normalized tokens (the
  // reference stores them normalized).
  std::string decoded;
};

struct encode_options {
  bool use_cache = true;  // the BPE word cache; off only to measure its effect
};

namespace detail {

// Finds added tokens leftmost-longest, as the reference's Aho-Corasick matcher does, and applies
// the single_word / lstrip / rstrip rules. Few tokens, so a first-byte filter is enough.
class added_token_matcher {
 public:
  struct piece {
    std::size_t begin;
    std::size_t end;
    const added_token* token;  // nullptr for plain text
  };

  void add(const added_token& token, std::string pattern) {
    if (pattern.empty()) return;
    first_bytes_[static_cast<unsigned char>(pattern[0])] = true;
    entries_.push_back({std::move(pattern), token});
  }
  bool empty() const { return entries_.empty(); }

  // Splits `text` into plain pieces and added-token pieces covering it in order.
  void split(std::string_view text, std::vector<piece>& out) const {
    std::size_t plain_start = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      if (!first_bytes_[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      const entry* best = nullptr;
      for (const entry& e : entries_) {
        if (text.substr(pos).starts_with(e.pattern) && (best == nullptr || e.pattern.size() > best->pattern.size())) {
          best = &e;
        }
      }
      if (best == nullptr) {
        ++pos;
        continue;
      }
      std::size_t start = pos;
      std::size_t stop = pos + best->pattern.size();
      pos = stop;  // the search resumes after the match even when the match is rejected
      const added_token& token = best->token;
      if (token.single_word) {
        const bool word_before = start > 0 && unicode::is_word(last_char(text.substr(0, start)));
        const bool word_after = stop < text.size() && unicode::is_word(first_char(text.substr(stop)));
        if (word_before || word_after) continue;
      }
      // Stripped white space goes with the token, but never text an earlier match kept.
      while (token.lstrip && start > plain_start && unicode::is_space(last_char(text.substr(0, start)))) {
        start = utf8::previous_char_start(text, start);
      }
      if (token.rstrip) {
        std::size_t next = stop;  // decode_at moves it past the character at stop
        while (stop < text.size() && unicode::is_space(utf8::decode_at(text, next))) stop = next;
      }
      if (plain_start < start) out.push_back({plain_start, start, nullptr});
      out.push_back({start, stop, &token});  // points into this matcher; valid while it lives
      plain_start = stop;
    }
    if (plain_start < text.size()) out.push_back({plain_start, text.size(), nullptr});
  }

 private:
  struct entry {
    std::string pattern;
    added_token token;
  };

  static char32_t last_char(std::string_view text) {
    std::size_t i = utf8::previous_char_start(text, text.size());
    return utf8::decode_at(text, i);
  }
  static char32_t first_char(std::string_view text) {
    std::size_t i = 0;
    return utf8::decode_at(text, i);
  }

  std::vector<entry> entries_;
  std::array<bool, 256> first_bytes_{};
};

// A token id: an integer that fits the tables' unsigned 32-bit ids. `field_of()` names the value,
// built only for an error: 150k vocabulary entries load in a loop that must stay cheap.
template <class FieldOf>
std::uint32_t token_id(simdjson::dom::element value, const FieldOf& field_of) {
  std::uint64_t id = 0;
  if (value.get(id) != simdjson::SUCCESS || id > 0xFFFFFFFFull) {
    field_of().fail("expected a token id (unsigned 32-bit)");
  }
  return static_cast<std::uint32_t>(id);
}

}  // namespace detail

class tokenizer {
 public:
  // Reads tokenizer.json, or <dir>/tokenizer.json when given a model directory.
  static tokenizer from_file(const std::filesystem::path& path_or_dir) {
    std::filesystem::path path = path_or_dir;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) path /= "tokenizer.json";
    const mapped_file file(path);  // refuses a FIFO or a directory before reading
    return from_json(file.nonempty_text(), path.string());
  }

  // Parses tokenizer.json text; `source` names it in error messages.
  static tokenizer from_json(std::string_view json, const std::string& source) {
    simdjson::dom::parser parser;
    const json_field root = parse_json_object(parser, json, source);
    tokenizer t;
    t.read_normalizer(root);
    read_pre_tokenizer(root);
    read_decoder(root);
    t.read_model(root);
    t.read_added_tokens(root);
    return t;
  }

  // Ids of `text` (UTF-8) as the reference encodes it with add_special_tokens=False: added and
  // special tokens written in the text are recognized, nothing is prepended or appended.
  std::vector<std::uint32_t> encode(std::string_view text, const encode_options& options = {}) const {
    utf8::validate(text, "tokenizer input");
    std::vector<std::uint32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<detail::added_token_matcher::piece> raw, normalized_pieces;
    std::vector<text_span> words;
    raw_matcher_.split(text, raw);
    for (const auto& piece : raw) {
      if (piece.token != nullptr) {
        ids.push_back(piece.token->id);
        continue;
      }
      const std::string normalized =
          nfc_ ? nfc(text.substr(piece.begin, piece.end - piece.begin)) : std::string(text.substr(piece.begin, piece.end - piece.begin));
      normalized_pieces.clear();
      normalized_matcher_.split(normalized, normalized_pieces);
      for (const auto& sub : normalized_pieces) {
        if (sub.token != nullptr) {
          ids.push_back(sub.token->id);
          continue;
        }
        const std::string_view segment = std::string_view(normalized).substr(sub.begin, sub.end - sub.begin);
        words.clear();
        qwen2_pretokenizer::split(segment, words);
        for (const text_span& w : words) {
          bpe_->encode_word(segment.substr(w.begin, w.end - w.begin), ids, options.use_cache);
        }
      }
    }
    return ids;
  }

  // Text of `ids`: byte-level tokens become their bytes, ill-formed UTF-8 becomes U+FFFD.
  std::string decode(std::span<const std::uint32_t> ids, bool skip_special = false) const {
    std::string bytes;
    for (const std::uint32_t id : ids) {
      std::optional<std::string_view> text;
      if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) {
        if (skip_special && added_[it->second].special) continue;
        text = added_[it->second].decoded;
      } else {
        text = bpe_->token(id);
      }
      if (!text) {
        throw error("tokenizer decode: id " + std::to_string(id) + " is not in the vocabulary (ids below " +
                    std::to_string(id_bound()) + ")");
      }
      // A token with a character outside the byte alphabet contributes its UTF-8 as is.
      bytes += byte_level_to_bytes(*text).value_or(std::string(*text));
    }
    return utf8::decode_lossy(bytes);
  }

  // Id of a vocabulary or added token written out (e.g. "<|image_pad|>").
  std::optional<std::uint32_t> token_to_id(std::string_view token) const {
    for (const added_token& a : added_) {
      if (a.content == token) return a.id;
    }
    return bpe_->token_id(token);
  }
  // One past the largest id, added tokens included (the embedding needs at least this many rows).
  std::size_t id_bound() const {
    std::size_t bound = bpe_->id_bound();
    for (const added_token& a : added_) bound = std::max(bound, std::size_t{a.id} + 1);
    return bound;
  }
  const std::vector<added_token>& added_tokens() const { return added_; }
  std::size_t merge_count() const { return bpe_->merge_count(); }
  bool normalizes_nfc() const { return nfc_; }

 private:
  tokenizer() = default;

  void read_normalizer(const json_field& root) {
    const auto n = root.find("normalizer");
    if (!n) return;
    const std::string_view type = (*n)["type"].string();
    if (type != "NFC") n->fail("type", "unsupported \"" + std::string(type) + "\" (supported: NFC or null)");
    nfc_ = true;
  }

  static void read_pre_tokenizer(const json_field& root) {
    const json_field p = root["pre_tokenizer"];
    const auto unsupported = [](const json_field& owner, std::string_view key, const std::string& found) {
      owner.fail(key, "unsupported " + found +
                          " (supported: Sequence of Split with the Qwen2 regex, Isolated, then ByteLevel without "
                          "prefix space or regex)");
    };
    if (p["type"].string() != "Sequence") unsupported(p, "type", "pre-tokenizer");
    const std::vector<json_field> steps = p["pretokenizers"].items();
    if (steps.size() != 2) unsupported(p, "pretokenizers", "step list");
    const json_field& split = steps[0];
    const json_field& byte_level = steps[1];
    if (split["type"].string() != "Split") unsupported(split, "type", "step");
    const auto regex = split["pattern"].find("Regex");
    if (!regex || regex->string() != qwen2_split_pattern) unsupported(split, "pattern", "split pattern");
    if (split["behavior"].string() != "Isolated") unsupported(split, "behavior", "behavior");
    if (split.boolean_or("invert", false)) unsupported(split, "invert", "inverted split");
    if (byte_level["type"].string() != "ByteLevel") unsupported(byte_level, "type", "step");
    if (byte_level.boolean_or("add_prefix_space", true)) unsupported(byte_level, "add_prefix_space", "prefix space");
    if (byte_level.boolean_or("use_regex", true)) unsupported(byte_level, "use_regex", "ByteLevel regex");
  }

  static void read_decoder(const json_field& root) {
    const json_field d = root["decoder"];
    if (d["type"].string() != "ByteLevel") d.fail("type", "unsupported decoder (supported: ByteLevel)");
  }

  void read_model(const json_field& root) {
    const json_field model = root["model"];
    const std::string_view type = model["type"].string();
    if (type != "BPE") model.fail("type", "unsupported \"" + std::string(type) + "\" (supported: BPE)");
    if (model.find("dropout")) model.fail("dropout", "BPE dropout is not supported (expected null)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (const auto v = model.find(key); v && !v->string().empty()) {
        v->fail("unsupported (byte-level BPE expects \"\" or null)");
      }
    }
    const json_field vocab_field = model["vocab"];
    const simdjson::dom::object vocab_object = vocab_field.object();
    std::vector<std::pair<std::string_view, std::uint32_t>> vocab;  // views into the parsed document
    vocab.reserve(vocab_object.size());
    for (const auto field : vocab_object) {
      const std::uint32_t id = detail::token_id(field.value, [&] { return vocab_field.member(field.key, field.value); });
      vocab.emplace_back(field.key, id);
    }
    bpe_model bpe(vocab, model.boolean_or("ignore_merges", false), model.source());
    const json_field merges = model["merges"];
    std::size_t index = 0;
    for (const simdjson::dom::element merge : merges.array()) {
      // Fields are built only on failure: 150k merges load in a loop that must stay cheap.
      const auto fail = [&](const std::string& what) { merges.item(index, merge).fail(what); };
      std::string_view left, right;
      if (std::string_view line; merge.get(line) == simdjson::SUCCESS) {
        // Legacy form "left right": byte-level tokens never contain a space, so exactly one.
        const std::size_t space = line.find(' ');
        if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
          fail("expected \"left right\" with one space, got \"" + std::string(line) + "\"");
        }
        left = line.substr(0, space);
        right = line.substr(space + 1);
      } else {
        simdjson::dom::array pair;
        if (merge.get(pair) != simdjson::SUCCESS || pair.size() != 2 || pair.at(0).get(left) != simdjson::SUCCESS ||
            pair.at(1).get(right) != simdjson::SUCCESS) {
          fail("expected [left, right] or \"left right\"");
        }
      }
      if (!bpe.add_merge(left, right)) {
        fail("merge \"" + std::string(left) + " " + std::string(right) + "\" uses a token missing from model.vocab");
      }
      ++index;
    }
    bpe.finish_merges();
    bpe_ = std::make_shared<const bpe_model>(std::move(bpe));
  }

  void read_added_tokens(const json_field& root) {
    const auto list = root.find("added_tokens");
    if (!list) return;
    for (const json_field& t : list->items()) {
      added_token a;
      const json_field id = t["id"];
      a.id = detail::token_id(id.element(), [&] { return id; });
      const json_field content = t["content"];
      a.content = std::string(content.string());
      utf8::validate(a.content, content.where());
      a.special = t.boolean_or("special", false);
      a.normalized = t.boolean_or("normalized", !a.special);
      a.lstrip = t.boolean_or("lstrip", false);
      a.rstrip = t.boolean_or("rstrip", false);
      a.single_word = t.boolean_or("single_word", false);
      added_.push_back(std::move(a));
    }
    for (std::size_t i = 0; i < added_.size(); ++i) {
      added_token& a = added_[i];
      a.decoded = a.normalized && nfc_ ? nfc(a.content) : a.content;
      if (!added_by_id_.emplace(a.id, i).second) list->fail("id " + std::to_string(a.id) + " appears twice");
      // Normalized tokens are looked for in normalized text, so their pattern is normalized too.
      if (a.normalized) {
        normalized_matcher_.add(a, a.decoded);
      } else {
        raw_matcher_.add(a, a.content);
      }
    }
  }

  bool nfc_ = false;
  std::shared_ptr<const bpe_model> bpe_;
  std::vector<added_token> added_;
  std::unordered_map<std::uint32_t, std::size_t> added_by_id_;  // id -> index in added_
  detail::added_token_matcher raw_matcher_;
  detail::added_token_matcher normalized_matcher_;
};

}  // namespace aq::io
