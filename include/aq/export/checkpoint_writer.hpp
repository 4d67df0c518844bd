// Writing an exported checkpoint shard by shard, streamed: every tensor's name, dtype and shape
// is known before its data (the layouts state them up front), so a shard's header is written
// first and each tensor goes to its offset as soon as it is ready, from any thread; nothing holds
// a whole shard in memory. The bytes are those of aq's safetensors_writer (metadata
// {"format": "pt"}, header keys sorted, data widest dtype first), so the same inputs give the same
// file. Any dtype safetensors defines may be written (F8_E4M3, I8, U8 codes; copied tensors keep
// theirs), and the shard index is written as transformers writes it.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

inline constexpr dtype dtype_f8_e4m3{"F8_E4M3", 1};
inline constexpr dtype dtype_i8{"I8", 1};
inline constexpr dtype dtype_u8{"U8", 1};

// Every byte-sized-or-wider dtype safetensors defines: what an input checkpoint may hold (copied
// as bytes) and what an exported one is read back with.
inline constexpr std::array<dtype, 16> any_safetensors_dtype{
    dtype{"BOOL", 1},   dtype_u8,        dtype_i8,  dtype{"I16", 2}, dtype{"U16", 2},
    dtype_i32,          dtype{"U32", 4}, dtype_i64, dtype{"U64", 8}, dtype{"F64", 8},
    dtype_f16,          dtype_bf16,      dtype_f32, dtype_f8_e4m3,   dtype{"F8_E5M2", 1},
    dtype{"F8_E8M0", 1}};

// A tensor of an output shard before its data: what its header entry says.
struct tensor_spec {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;

  std::uint64_t bytes() const {
    std::uint64_t total = type.size;
    for (const std::int64_t extent : shape) total *= static_cast<std::uint64_t>(extent);
    return total;
  }
};

struct output_tensor {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;
};

template <class T>
std::vector<std::byte> bytes_of(std::span<const T> values) {
  const auto raw = std::as_bytes(values);
  return {raw.begin(), raw.end()};
}

template <class T>
std::vector<std::byte> payload_of(const std::vector<T>& values) {
  return bytes_of(std::span<const T>(values));
}

// The tensors `specs` describe, with their payloads in the same order.
inline std::vector<output_tensor> with_payloads(std::vector<tensor_spec> specs,
                                                std::vector<std::vector<std::byte>> payloads) {
  if (specs.size() != payloads.size()) throw error("export: tensors and payloads differ in count");
  std::vector<output_tensor> out;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (payloads[i].size() != specs[i].bytes()) {
      throw error("export: tensor " + specs[i].name + ": shape needs " + std::to_string(specs[i].bytes()) +
                  " bytes, got " + std::to_string(payloads[i].size()));
    }
    out.push_back({std::move(specs[i].name), specs[i].type, std::move(specs[i].shape), std::move(payloads[i])});
  }
  return out;
}

// One output shard, written in place: the header at construction, then every tensor at its
// offset (write() may be called from several threads at once), then finish(). A shard destroyed
// unfinished is removed.
class shard_file {
 public:
  shard_file(std::filesystem::path path, const std::vector<tensor_spec>& specs) : path_(std::move(path)) {
    std::vector<aq::detail::header_entry> entries;
    for (const tensor_spec& spec : specs) {
      if (index_.count(spec.name) != 0) throw error("export: tensor " + spec.name + " written twice");
      index_.emplace(spec.name, index_.size());
    }
    std::map<std::string_view, const tensor_spec*> sorted;
    for (const tensor_spec& spec : specs) sorted.emplace(spec.name, &spec);
    for (const auto& [name, spec] : sorted) entries.push_back({name, spec->type, spec->shape, spec->bytes()});
    layout_ = aq::detail::layout_safetensors({{"format", "pt"}}, entries);
    written_.assign(specs.size(), 0);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw error(path_.string() + ": cannot open for writing: " + std::strerror(errno));
    const auto size = static_cast<off_t>(layout_.prefix.size() + layout_.data_bytes);
    if (::ftruncate(fd_, size) != 0) fail(std::strerror(errno));
    write_at(0, std::as_bytes(std::span<const char>(layout_.prefix)));
  }
  ~shard_file() {
    if (fd_ < 0) return;
    ::close(fd_);
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  shard_file(const shard_file&) = delete;
  shard_file& operator=(const shard_file&) = delete;

  void write(std::string_view name, std::span<const std::byte> bytes) {
    const auto it = layout_.offsets.find(name);
    if (it == layout_.offsets.end()) throw error("export: tensor " + std::string(name) + " is not in the shard");
    const auto [begin, end] = it->second;
    if (bytes.size() != end - begin) {
      throw error("export: tensor " + std::string(name) + ": shape needs " + std::to_string(end - begin) +
                  " bytes, got " + std::to_string(bytes.size()));
    }
    {
      std::lock_guard lock(mutex_);
      char& done = written_[index_.find(name)->second];
      if (done != 0) throw error("export: tensor " + std::string(name) + " written twice");
      done = 1;
    }
    write_at(layout_.prefix.size() + begin, bytes);
  }

  void write(const output_tensor& tensor) { write(tensor.name, tensor.bytes); }

  // Flushes the shard to disk once every tensor is in it.
  void finish() {
    for (const auto& [name, i] : index_) {
      if (written_[i] == 0) throw error("export: tensor " + name + " was never written");
    }
    if (::fsync(fd_) != 0) fail(std::strerror(errno));
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
      throw error(path_.string() + ": write failed: " + std::strerror(errno));
    }
  }

  // Sum of the tensors' data bytes (the index's total_size counts these).
  std::uint64_t data_bytes() const { return layout_.data_bytes; }

 private:
  [[noreturn]] void fail(const std::string& reason) const { throw error(path_.string() + ": write failed: " + reason); }

  void write_at(std::uint64_t offset, std::span<const std::byte> bytes) const {
    while (!bytes.empty()) {
      const ::ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(n < 0 ? std::strerror(errno) : "no progress");
      bytes = bytes.subspan(static_cast<std::size_t>(n));
      offset += static_cast<std::uint64_t>(n);
    }
  }

  std::filesystem::path path_;
  aq::detail::safetensors_layout layout_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::vector<char> written_;
  std::mutex mutex_;
  int fd_ = -1;
};

// model.safetensors.index.json as transformers' save_pretrained writes it: json.dumps(index,
// indent=2, sort_keys=True) + "\n", total_size = the tensors' data bytes.
inline std::string shard_index_json(std::uint64_t total_size, const std::map<std::string, std::string>& weight_map) {
  io::json_writer json(2);
  json.begin_object().key("metadata").begin_object().key("total_size").integer(static_cast<std::int64_t>(total_size));
  json.end_object().key("weight_map").begin_object();
  for (const auto& [tensor, shard] : weight_map) json.key(tensor).string(shard);
  json.end_object().end_object();
  return json.str() + "\n";
}

}  // namespace aq::hf_export
