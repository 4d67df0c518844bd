// Byte-level BPE: maps the bytes of one pre-tokenized piece to GPT-2's printable byte alphabet
// and applies merges lowest rank first (leftmost on ties), as Hugging Face tokenizers' BPE
// model does. Owns the vocabulary, the merge table and a word cache.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/tokenizer/utf8.hpp"

namespace aq::io {

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes take the
// code points 256.. in byte order, so every byte has a visible one-character token.
inline constexpr std::array<char32_t, 256> byte_to_char = [] {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}();

// Inverse of byte_to_char for code points below 324; -1 where a code point stands for no byte.
inline constexpr std::array<std::int16_t, 324> char_to_byte = [] {
  std::array<std::int16_t, 324> table{};
  for (auto& v : table) v = -1;
  for (int b = 0; b < 256; ++b) table[byte_to_char[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
  return table;
}();

// Token text in the byte alphabet -> raw bytes; nullopt if a character stands for no byte.
inline std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  for (std::size_t i = 0; i < token.size();) {
    if (utf8::valid_sequence_length(token, i) == 0) return std::nullopt;
    const char32_t cp = utf8::decode_at(token, i);
    if (cp >= char_to_byte.size() || char_to_byte[cp] < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(char_to_byte[cp]));
  }
  return bytes;
}

inline std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8::append(out, byte_to_char[b]);
  return out;
}

class bpe_model {
 public:
  // `vocab` holds (token, id) pairs; `source` names the file in error messages.
  bpe_model(const std::vector<std::pair<std::string_view, std::uint32_t>>& vocab, bool ignore_merges,
            const std::string& source)
      : ignore_merges_(ignore_merges), cache_(std::make_unique<word_cache>()) {
    std::uint32_t max_id = 0;
    std::size_t bytes = 0;
    for (const auto& [token, id] : vocab) {
      max_id = std::max(max_id, id);
      bytes += token.size();
    }
    const std::size_t bound = vocab.empty() ? 0 : std::size_t{max_id} + 1;
    // Ids index dense tables, so a few sparse ids must not cost gigabytes (one id of 4e9 in a 30-byte
    // file did): published vocabularies are dense, gaps of up to half the table are allowed.
    if (bound > 2 * vocab.size() + 256) {
      throw error(source + ": model.vocab: id " + std::to_string(max_id) + " is far beyond the " +
                  std::to_string(vocab.size()) + " tokens (ids must be dense: below " +
                  std::to_string(2 * vocab.size() + 256) + ")");
    }
    text_.reserve(bytes);
    begin_.assign(bound + 1, 0);
    length_.assign(bound, absent);
    for (const auto& [token, id] : vocab) {
      if (length_[id] != absent) {
        throw error(source + ": model.vocab: id " + std::to_string(id) + " appears twice");
      }
      begin_[id] = static_cast<std::uint32_t>(text_.size());
      length_[id] = static_cast<std::uint32_t>(token.size());
      text_ += token;
    }
    slots_.assign(table_size(vocab.size()), 0);
    for (const auto& [token, id] : vocab) {
      std::size_t slot = hash_bytes(token) & (slots_.size() - 1);
      for (; slots_[slot] != 0; slot = (slot + 1) & (slots_.size() - 1)) {
        if (token_view(slots_[slot] - 1) == token) {
          throw error(source + ": model.vocab: token \"" + std::string(token) + "\" appears twice");
        }
      }
      slots_[slot] = id + 1;
      ++size_;
    }
    for (std::size_t b = 0; b < 256; ++b) {
      std::string symbol;
      utf8::append(symbol, byte_to_char[b]);
      const auto id = token_id(symbol);
      if (!id) {
        throw error(source + ": model.vocab: byte-level symbol for byte " + std::to_string(b) + " (\"" + symbol +
                    "\") missing; byte-level BPE needs all 256");
      }
      byte_ids_[b] = *id;
    }
  }

  // Registers the next merge (the first registered is applied first). False when a part or their
  // concatenation is not a token.
  bool add_merge(std::string_view left, std::string_view right) {
    const auto l = token_id(left), r = token_id(right);
    joined_.assign(left);
    joined_ += right;
    const auto m = token_id(joined_);
    if (!l || !r || !m) return false;
    pending_merges_.push_back({pair_key(*l, *r), merge_info{merge_count_++, *m}});
    return true;
  }

  // Builds the merge table from the registered merges; call once after the last add_merge.
  void finish_merges() {
    merge_slots_.assign(table_size(pending_merges_.size()), merge_slot{empty_key, {}});
    for (const merge_slot& m : pending_merges_) {
      std::size_t slot = hash_pair(m.key) & (merge_slots_.size() - 1);
      while (merge_slots_[slot].key != empty_key && merge_slots_[slot].key != m.key) {
        slot = (slot + 1) & (merge_slots_.size() - 1);
      }
      merge_slots_[slot] = m;  // a repeated pair keeps its last rank, as the reference's map does
    }
    pending_merges_.clear();
    pending_merges_.shrink_to_fit();
  }

  std::optional<std::uint32_t> token_id(std::string_view token) const {
    if (slots_.empty()) return std::nullopt;
    for (std::size_t slot = hash_bytes(token) & (slots_.size() - 1); slots_[slot] != 0;
         slot = (slot + 1) & (slots_.size() - 1)) {
      if (token_view(slots_[slot] - 1) == token) return slots_[slot] - 1;
    }
    return std::nullopt;
  }
  // The token of `id`, or nullopt when the vocabulary has no such id.
  std::optional<std::string_view> token(std::uint32_t id) const {
    if (id >= length_.size() || length_[id] == absent) return std::nullopt;
    return token_view(id);
  }
  // One past the largest id.
  std::size_t id_bound() const { return length_.size(); }
  std::size_t size() const { return size_; }
  std::size_t merge_count() const { return merge_count_; }

  // Appends the ids of one pre-tokenized piece (raw bytes). The cache remembers recent words.
  void encode_word(std::string_view bytes, std::vector<std::uint32_t>& ids, bool use_cache = true) const {
    if (bytes.empty()) return;
    const bool cacheable = use_cache && bytes.size() <= max_cached_word_bytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      const auto it = cache_->words.find(bytes);
      if (it != cache_->words.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const std::size_t first = ids.size();
    merge_word(bytes, ids);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      if (cache_->words.size() < cache_capacity) {
        cache_->words.emplace(std::string(bytes), std::vector<std::uint32_t>(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end()));
      }
    }
  }

 private:
  struct merge_info {
    std::uint32_t rank;
    std::uint32_t id;
  };
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct word_cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<std::uint32_t>, string_hash, std::equal_to<>> words;
  };
  static constexpr std::size_t cache_capacity = 10000;
  static constexpr std::size_t max_cached_word_bytes = 256;

  struct merge_slot {
    std::uint64_t key;
    merge_info info;
  };
  static constexpr std::uint32_t absent = 0xFFFFFFFFu;
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};

  static std::uint64_t pair_key(std::uint32_t a, std::uint32_t b) { return (std::uint64_t{a} << 32) | b; }
  // Open-addressing tables at most half full: loading 150k tokens and merges stays fast.
  static std::size_t table_size(std::size_t count) {
    std::size_t size = 16;
    while (size < 2 * count) size *= 2;
    return size;
  }
  static std::size_t hash_pair(std::uint64_t key) {
    key ^= key >> 29;
    key *= 0xBF58476D1CE4E5B9ull;
    key ^= key >> 32;
    return static_cast<std::size_t>(key);
  }
  static std::size_t hash_bytes(std::string_view s) {
    std::uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
    return hash_pair(h);
  }
  std::string_view token_view(std::uint32_t id) const { return std::string_view(text_).substr(begin_[id], length_[id]); }

  const merge_info* find_merge(std::uint32_t a, std::uint32_t b) const {
    const std::uint64_t key = pair_key(a, b);
    for (std::size_t slot = hash_pair(key) & (merge_slots_.size() - 1);; slot = (slot + 1) & (merge_slots_.size() - 1)) {
      const merge_slot& m = merge_slots_[slot];
      if (m.key == key) return &m.info;
      if (m.key == empty_key) return nullptr;
    }
  }

  static constexpr std::size_t short_word_bytes = 48;
  static constexpr std::uint32_t no_merge = 0xFFFFFFFFu;

  // Short words (nearly all): the same lowest-rank-leftmost order found by scanning a few pairs
  // on the stack, which beats a heap's allocations.
  void merge_short_word(std::string_view bytes, std::vector<std::uint32_t>& ids) const {
    std::array<std::uint32_t, short_word_bytes> sym{}, rank{}, next_id{};
    std::size_t len = bytes.size();
    const auto rate = [&](std::size_t i) {  // pair (sym[i], sym[i + 1])
      const merge_info* m = find_merge(sym[i], sym[i + 1]);
      rank[i] = m != nullptr ? m->rank : no_merge;
      next_id[i] = m != nullptr ? m->id : 0;
    };
    for (std::size_t i = 0; i < len; ++i) sym[i] = byte_ids_[static_cast<unsigned char>(bytes[i])];
    for (std::size_t i = 0; i + 1 < len; ++i) rate(i);
    while (len > 1) {
      std::size_t best = 0;
      for (std::size_t i = 1; i + 1 < len; ++i) {
        if (rank[i] < rank[best]) best = i;
      }
      if (rank[best] == no_merge) break;
      sym[best] = next_id[best];
      for (std::size_t i = best + 1; i + 1 < len; ++i) sym[i] = sym[i + 1];
      for (std::size_t i = best + 1; i + 2 < len; ++i) {
        rank[i] = rank[i + 1];
        next_id[i] = next_id[i + 1];
      }
      --len;
      if (best > 0) rate(best - 1);
      if (best + 1 < len) rate(best);
    }
    ids.insert(ids.end(), sym.begin(), sym.begin() + static_cast<std::ptrdiff_t>(len));
  }

  void merge_word(std::string_view bytes, std::vector<std::uint32_t>& ids) const {
    if (ignore_merges_) {
      if (const auto id = token_id(bytes_to_byte_level(bytes))) {
        ids.push_back(*id);
        return;
      }
    }
    const std::size_t n = bytes.size();
    if (n <= short_word_bytes) {
      merge_short_word(bytes, ids);
      return;
    }
    std::vector<std::uint32_t> sym(n);
    std::vector<std::int32_t> prev(n), next(n);
    for (std::size_t i = 0; i < n; ++i) {
      sym[i] = byte_ids_[static_cast<unsigned char>(bytes[i])];
      prev[i] = static_cast<std::int32_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
    }
    // Candidates ordered by (rank, position of the left symbol); stale ones are skipped on pop.
    struct candidate {
      std::uint32_t rank;
      std::int32_t pos;
      std::uint32_t id;
      bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<candidate, std::vector<candidate>, std::greater<>> queue;
    const auto push = [&](std::int32_t left) {
      if (left < 0 || next[static_cast<std::size_t>(left)] < 0) return;
      const auto* m = find_merge(sym[static_cast<std::size_t>(left)],
                                 sym[static_cast<std::size_t>(next[static_cast<std::size_t>(left)])]);
      if (m != nullptr) queue.push({m->rank, left, m->id});
    };
    for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::int32_t>(i));
    std::vector<bool> removed(n, false);
    while (!queue.empty()) {
      const candidate top = queue.top();
      queue.pop();
      const auto pos = static_cast<std::size_t>(top.pos);
      if (removed[pos] || next[pos] < 0) continue;
      const auto right = static_cast<std::size_t>(next[pos]);
      const auto* m = find_merge(sym[pos], sym[right]);
      if (m == nullptr || m->id != top.id || m->rank != top.rank) continue;
      sym[pos] = top.id;
      removed[right] = true;
      next[pos] = next[right];
      if (next[right] >= 0) prev[static_cast<std::size_t>(next[right])] = top.pos;
      push(prev[pos]);
      push(top.pos);
    }
    for (std::int32_t i = 0; i >= 0; i = next[static_cast<std::size_t>(i)]) ids.push_back(sym[static_cast<std::size_t>(i)]);
  }

  std::string text_;                   // all tokens back to back
  std::vector<std::uint32_t> begin_;   // per id: offset in text_
  std::vector<std::uint32_t> length_;  // per id: byte length, `absent` for unused ids
  std::vector<std::uint32_t> slots_;   // token hash table: id + 1, 0 = empty
  std::size_t size_ = 0;
  std::vector<merge_slot> pending_merges_;
  std::vector<merge_slot> merge_slots_ = std::vector<merge_slot>(16, merge_slot{empty_key, {}});
  std::string joined_;  // scratch for add_merge
  std::uint32_t merge_count_ = 0;
  std::array<std::uint32_t, 256> byte_ids_{};
  bool ignore_merges_ = false;
  std::unique_ptr<word_cache> cache_;
};

}  // namespace aq::io
