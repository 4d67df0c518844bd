// safetensors reading and writing: round trips through the writer, every validation the reader
// makes on corrupt files (one-line messages naming file and tensor), sharded checkpoints, and the
// bf16/f16 -> f32 conversions against independent float64 references (exact: tolerance 0).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"

namespace test_safetensors {

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("aq_test_safetensors_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A safetensors file from a literal header (length prefix computed unless given) and data bytes.
std::string raw_file(const std::string& header, std::size_t data_bytes, std::uint64_t header_length = UINT64_MAX) {
  const std::uint64_t length = header_length == UINT64_MAX ? header.size() : header_length;
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xffu);
  return out + header + std::string(data_bytes, '\0');
}

// The message of the aq::error thrown when opening `bytes` as a file.
std::string open_error(const std::string& bytes) {
  const fs::path path = fresh_dir("corrupt") / "bad.safetensors";
  write_bytes(path, bytes);
  try {
    const aq::safetensors_file file(path);
  } catch (const aq::error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);  // one line
    CHECK(message.rfind(path.string() + ": ", 0) == 0);  // names the file first
    return message;
  }
  FAIL("opening a corrupt file did not throw");
  return {};
}

// Independent decoders: the value of a bf16 / f16 bit pattern in float64.
double reference_bf16(std::uint16_t bits) {
  const int sign = bits >> 15;
  const int exponent = (bits >> 7) & 0xff;
  const int mantissa = bits & 0x7f;
  double value;
  if (exponent == 0xff) {
    value = mantissa != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exponent == 0) {
    value = std::ldexp(mantissa, -133);  // subnormal: m * 2^(1-127-7)
  } else {
    value = std::ldexp(128 + mantissa, exponent - 134);
  }
  return sign != 0 ? -value : value;
}

double reference_f16(std::uint16_t bits) {
  const int sign = bits >> 15;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  double value;
  if (exponent == 0x1f) {
    value = mantissa != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exponent == 0) {
    value = std::ldexp(mantissa, -24);
  } else {
    value = std::ldexp(1024 + mantissa, exponent - 25);
  }
  return sign != 0 ? -value : value;
}

// Nearest f16 to a finite float by search over all positive f16 values, ties to the even pattern;
// 0x7c00 (infinity) stands for 65536, the first value past the largest finite f16.
std::uint16_t reference_float_to_f16(float x) {
  static const std::vector<double> table = [] {
    std::vector<double> values;
    for (std::uint32_t bits = 0; bits <= 0x7c00u; ++bits) values.push_back(bits == 0x7c00u ? 65536.0 : reference_f16(static_cast<std::uint16_t>(bits)));
    return values;
  }();
  const std::uint16_t sign = std::signbit(x) ? 0x8000u : 0;
  const double magnitude = std::fabs(static_cast<double>(x));
  if (magnitude >= 65536.0) return sign | 0x7c00u;
  const auto upper = std::upper_bound(table.begin(), table.end(), magnitude);
  const auto hi = static_cast<std::uint16_t>(upper - table.begin());
  const auto lo = static_cast<std::uint16_t>(hi - 1);
  const double down = magnitude - table[lo];
  const double up = table[hi] - magnitude;
  const bool choose_up = up < down || (up == down && (hi & 1u) == 0);
  return sign | (choose_up ? hi : lo);
}

}  // namespace

TEST_CASE("bf16 and f16 decode exactly like a float64 reference for all 65536 patterns") {
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto pattern = static_cast<std::uint16_t>(bits);
    const double bf = reference_bf16(pattern);
    const double half = reference_f16(pattern);
    const float got_bf = aq::bf16_to_float(aq::bf16::from_bits(pattern));
    const float got_half = aq::f16_to_float(aq::f16::from_bits(pattern));
    if (std::isnan(bf)) {
      REQUIRE(std::isnan(got_bf));
    } else {
      REQUIRE(static_cast<double>(got_bf) == bf);
      REQUIRE(std::signbit(got_bf) == std::signbit(bf));
    }
    if (std::isnan(half)) {
      REQUIRE(std::isnan(got_half));
    } else {
      REQUIRE(static_cast<double>(got_half) == half);
      REQUIRE(std::signbit(got_half) == std::signbit(half));
    }
  }
}

TEST_CASE("float to f16 rounds to nearest even, overflows to infinity, keeps NaN") {
  // Every f16 value and every midpoint between neighbours round-trips as the reference says.
  for (std::uint32_t bits = 0; bits < 0x7c00u; ++bits) {
    const float value = static_cast<float>(reference_f16(static_cast<std::uint16_t>(bits)));
    REQUIRE(aq::float_to_f16(value).bits == bits);
    REQUIRE(aq::float_to_f16(-value).bits == (bits | 0x8000u));
    const float midpoint = static_cast<float>((reference_f16(static_cast<std::uint16_t>(bits)) +
                                               (bits + 1 == 0x7c00u ? 65536.0 : reference_f16(static_cast<std::uint16_t>(bits + 1)))) / 2);
    REQUIRE(aq::float_to_f16(midpoint).bits == reference_float_to_f16(midpoint));
  }
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> mantissa(0, 0x7fffffu);
  std::uniform_int_distribution<std::uint32_t> exponent(127 - 30, 127 + 17);  // below subnormals .. past 65504
  std::uniform_int_distribution<std::uint32_t> sign(0, 1);
  for (int i = 0; i < 300000; ++i) {
    const float x = std::bit_cast<float>((sign(rng) << 31) | (exponent(rng) << 23) | mantissa(rng));
    REQUIRE(aq::float_to_f16(x).bits == reference_float_to_f16(x));
  }
  CHECK(aq::float_to_f16(65519.99f).bits == 0x7bffu);
  CHECK(aq::float_to_f16(65520.0f).bits == 0x7c00u);
  CHECK(aq::float_to_f16(std::numeric_limits<float>::infinity()).bits == 0x7c00u);
  CHECK(std::isnan(aq::f16_to_float(aq::float_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("dtype descriptors name the safetensors dtypes and reject others") {
  CHECK(aq::find_dtype("BF16") == aq::dtype_bf16);
  CHECK(aq::find_dtype("F16")->size == 2);
  CHECK(aq::find_dtype("F32")->size == 4);
  CHECK_FALSE(aq::find_dtype("I8").has_value());
  CHECK_FALSE(aq::find_dtype("bf16").has_value());
  CHECK_THROWS_WITH_AS(aq::visit_dtype(aq::dtype{"I8", 1}, [](auto) { return 0; }), "dtype I8 not supported (BF16, F16, F32)",
                       aq::error);
}

TEST_CASE("writer and reader round-trip bf16, f16 and f32 tensors with metadata") {
  const fs::path dir = fresh_dir("round_trip");
  const std::vector<float> f32_values{1.5f, -2.25f, 3.0e-8f, 1.0e30f, -0.0f, 7.0f};
  const std::vector<float> wide{0.1f, -1.0f / 3.0f, 65504.0f, 1.0e-6f, 1.0e6f};
  std::vector<aq::bf16> bf16_values;
  for (const float v : wide) bf16_values.push_back(aq::float_to_bf16(v));

  aq::safetensors_writer writer;
  writer.add("b.bf16", {5}, std::span<const aq::bf16>(bf16_values));
  writer.add("a.f32", {2, 3}, std::span<const float>(f32_values));
  writer.add_rounded("c.f16", aq::dtype_f16, {5, 1}, wide);
  writer.add_rounded("d.scalar", aq::dtype_f32, {}, std::vector<float>{42.0f});
  writer.add_rounded("e.empty", aq::dtype_bf16, {0, 3}, std::vector<float>{});
  writer.set_metadata("format", "pt");
  writer.set_metadata("note", "quote \" backslash \\ newline \n");
  const fs::path path = dir / "model.safetensors";
  writer.write(path);

  const aq::safetensors_file file(path);
  REQUIRE(file.tensors().size() == 5);
  CHECK(file.tensors()[0].name == "a.f32");  // sorted by name
  CHECK(file.tensors()[4].name == "e.empty");
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("note") == "quote \" backslash \\ newline \n");

  const aq::tensor_view& a = file.at("a.f32");
  CHECK(a.dtype == aq::dtype_f32);
  CHECK(aq::shape_string(a.shape) == "[2, 3]");
  CHECK(aq::to_float_vector(a) == f32_values);

  const std::vector<float> b = aq::to_float_vector(file.at("b.bf16"));
  for (std::size_t i = 0; i < wide.size(); ++i) CHECK(b[i] == aq::round_to_bf16(wide[i]));
  const std::vector<float> c = aq::to_float_vector(file.at("c.f16"));
  for (std::size_t i = 0; i < wide.size(); ++i) {
    CHECK(c[i] == static_cast<float>(reference_f16(reference_float_to_f16(wide[i]))));
  }
  CHECK(file.at("c.f16").dtype == aq::dtype_f16);
  CHECK(file.at("d.scalar").shape.empty());
  CHECK(aq::to_float_vector(file.at("d.scalar")) == std::vector<float>{42.0f});
  CHECK(file.at("e.empty").numel() == 0);
  CHECK(file.at("e.empty").bytes.empty());

  // bf16 out of f32 rounds like float_to_bf16; bf16 out of bf16 is a copy.
  const std::vector<aq::bf16> a16 = aq::to_bf16_vector(a);
  for (std::size_t i = 0; i < f32_values.size(); ++i) CHECK(a16[i].bits == aq::float_to_bf16(f32_values[i]).bits);
  CHECK(aq::to_bf16_vector(file.at("b.bf16"))[1].bits == bf16_values[1].bits);

  // Data starts 8-aligned and every tensor is naturally aligned (widest dtype first).
  const std::string bytes = read_bytes(path);
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  CHECK((8 + header_size) % 8 == 0);
  CHECK(bytes[8] == '{');
  // a.f32 is the first tensor of the data area (F32 before the 2-byte dtypes).
  for (const aq::tensor_view& t : file.tensors()) {
    if (t.bytes.empty()) continue;
    const auto offset = static_cast<std::size_t>(t.bytes.data() - file.at("a.f32").bytes.data());
    CHECK(offset % t.dtype.size == 0);
  }
  CHECK(bytes.find("\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}") != std::string::npos);
  CHECK(bytes.find("{\"__metadata__\":{\"format\":\"pt\",") == 8);
}

TEST_CASE("the writer is deterministic whatever the insertion order, and refuses bad tensors") {
  const std::vector<float> x{1, 2, 3, 4};
  aq::safetensors_writer first;
  first.add("z", {4}, std::span<const float>(x));
  first.add_rounded("m", aq::dtype_bf16, {2, 2}, x);
  first.add_rounded("a", aq::dtype_f16, {1, 4}, x);
  aq::safetensors_writer second;
  second.add_rounded("a", aq::dtype_f16, {1, 4}, x);
  second.add_rounded("m", aq::dtype_bf16, {2, 2}, x);
  second.add("z", {4}, std::span<const float>(x));
  CHECK(first.serialize() == second.serialize());
  CHECK(first.serialize().size() % 8 == 0);  // 8 + padded header + 16 + 8 + 8

  CHECK_THROWS_WITH_AS(first.add("z", {4}, std::span<const float>(x)), "safetensors writer: tensor z: added twice", aq::error);
  CHECK_THROWS_WITH_AS(first.add("w", {3}, std::span<const float>(x)),
                       "safetensors writer: tensor w: shape needs 12 bytes of F32, got 16", aq::error);
  CHECK_THROWS_AS(first.add("__metadata__", {4}, std::span<const float>(x)), aq::error);
  CHECK_THROWS_WITH_AS(first.add_rounded("q", aq::dtype{"I8", 1}, {4}, x),
                       "safetensors writer: tensor q: dtype I8 not supported (BF16, F16, F32)", aq::error);
}

TEST_CASE("corrupt files are rejected with one line naming the file and the tensor") {
  const std::string good_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SUBCASE("a valid hand-written file opens") {
    const fs::path path = fresh_dir("valid") / "ok.safetensors";
    write_bytes(path, raw_file("{" + good_entry + "}   ", 8));
    const aq::safetensors_file file(path);
    CHECK(file.tensors().size() == 1);
    CHECK(file.at("w").numel() == 2);
    CHECK_THROWS_WITH_AS(file.at("nope"), (path.string() + ": tensor nope: not in this file").c_str(), aq::error);
  }
  SUBCASE("truncated before the header length") {
    CHECK(open_error(std::string(5, '\0')).find("truncated: 5 bytes") != std::string::npos);
    CHECK(open_error("").find("truncated: 0 bytes") != std::string::npos);
  }
  SUBCASE("header length past the end of the file") {
    const std::string file = raw_file("{" + good_entry + "}", 8);
    CHECK(open_error(file.substr(0, 20)).find("exceeds the file size minus 8 (12 bytes)") != std::string::npos);
  }
  SUBCASE("header length over the 100 MB limit") {
    CHECK(open_error(raw_file("{}", 0, 100'000'001)).find("header length 100000001 exceeds the limit") != std::string::npos);
  }
  SUBCASE("header that is not JSON, or not an object") {
    CHECK(open_error(raw_file("{\"w\":{", 0)).find("header is not valid JSON") != std::string::npos);
    CHECK(open_error(raw_file("[1,2]", 0)).find("header is an array, expected a JSON object") != std::string::npos);
    CHECK(open_error(raw_file(R"({"w":3})", 0)).find("tensor w: entry is an integer") != std::string::npos);
  }
  SUBCASE("unsupported and unknown dtypes") {
    const std::string message = open_error(raw_file(R"({"x":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})", 2));
    CHECK(message.substr(message.find(": tensor")) == ": tensor x: dtype I8 not supported (BF16, F16, F32)");
    CHECK(open_error(raw_file(R"({"x":{"dtype":"Q7","shape":[2],"data_offsets":[0,2]}})", 2))
              .find("tensor x: dtype Q7 unknown (supported: BF16, F16, F32)") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"shape":[2],"data_offsets":[0,2]}})", 2)).find("tensor x: dtype: missing") !=
          std::string::npos);
  }
  SUBCASE("shapes must be non-negative integers") {
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0))
              .find("tensor x: shape[0] is negative (-1)") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8))
              .find("tensor x: shape[0] is a floating-point number") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8))
              .find("tensor x: shape is a string, expected an array") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8))
              .find("tensor x: shape [4294967296, 4294967296] overflows") != std::string::npos);
  }
  SUBCASE("data offsets inside the data area, ordered, matching the shape") {
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4))
              .find("tensor x: data_offsets [0, 8] outside the data area of 4 bytes") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8))
              .find("tensor x: data_offsets [8, 0] has begin > end") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8))
              .find("tensor x: shape [3] x BF16 (2 bytes) = 6 bytes, but data_offsets [0, 8] span 8") != std::string::npos);
    CHECK(open_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8))
              .find("tensor x: data_offsets must be an array [begin, end]") != std::string::npos);
  }
  SUBCASE("overlapping tensors") {
    const std::string message = open_error(raw_file(
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
    CHECK(message.find("tensors a [0, 8] and b [4, 12] overlap") != std::string::npos);
  }
  SUBCASE("a name given twice") {
    CHECK(open_error(raw_file("{" + good_entry + "," + good_entry + "}", 8)).find("tensor w: appears twice in the header") !=
          std::string::npos);
  }
  SUBCASE("__metadata__ must be a map of strings") {
    CHECK(open_error(raw_file(R"({"__metadata__":{"format":1}})", 0)).find("__metadata__.format is an integer, expected a string") !=
          std::string::npos);
    CHECK(open_error(raw_file(R"({"__metadata__":[]})", 0)).find("__metadata__ is an array") != std::string::npos);
  }
}

TEST_CASE("sharded checkpoints follow model.safetensors.index.json") {
  const fs::path dir = fresh_dir("sharded");
  const std::vector<float> ones(6, 1.0f);
  const std::vector<float> twos(4, 2.0f);
  const auto write_shards = [&] {
    aq::safetensors_writer first;
    first.add("layer.0.weight", {2, 3}, std::span<const float>(ones));
    first.add_rounded("layer.0.bias", aq::dtype_bf16, {2}, std::vector<float>{0.5f, 0.25f});
    first.write(dir / "model-00001-of-00002.safetensors");
    aq::safetensors_writer second;
    second.add("layer.1.weight", {4}, std::span<const float>(twos));
    second.write(dir / "model-00002-of-00002.safetensors");
  };
  const auto write_index = [&](const std::string& weight_map) {
    write_bytes(dir / "model.safetensors.index.json", R"({"metadata":{"total_size":44},"weight_map":{)" + weight_map + "}}");
  };
  const std::string good_map =
      R"("layer.0.weight":"model-00001-of-00002.safetensors","layer.0.bias":"model-00001-of-00002.safetensors",)"
      R"("layer.1.weight":"model-00002-of-00002.safetensors")";
  const std::string index = (dir / "model.safetensors.index.json").string();
  write_shards();

  SUBCASE("a consistent index opens all shards") {
    write_index(good_map);
    const aq::safetensors_checkpoint checkpoint(dir);
    CHECK(checkpoint.sharded());
    CHECK(checkpoint.files().size() == 2);
    REQUIRE(checkpoint.tensors().size() == 3);
    CHECK(checkpoint.tensors()[0].name == "layer.0.bias");
    CHECK(aq::to_float_vector(checkpoint.at("layer.1.weight")) == twos);
    CHECK(checkpoint.at("layer.1.weight").file == (dir / "model-00002-of-00002.safetensors").string());
    CHECK(aq::to_float_vector(checkpoint.at("layer.0.bias")) == std::vector<float>{0.5f, 0.25f});
    CHECK(checkpoint.total_bytes() == 24 + 4 + 16);
    CHECK(checkpoint.find("layer.2.weight") == nullptr);
    CHECK_THROWS_WITH_AS(checkpoint.at("layer.2.weight"), (dir.string() + ": tensor layer.2.weight: not in the checkpoint").c_str(),
                         aq::error);
    const aq::safetensors_checkpoint via_index(dir / "model.safetensors.index.json");
    CHECK(via_index.tensors().size() == 3);
  }
  SUBCASE("a missing shard") {
    write_index(good_map + R"(,"layer.2.weight":"model-00003-of-00003.safetensors")");
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir},
                         (index + ": weight_map: shard model-00003-of-00003.safetensors does not exist").c_str(), aq::error);
  }
  SUBCASE("a tensor the named shard does not hold") {
    write_index(R"("layer.0.weight":"model-00002-of-00002.safetensors","layer.0.bias":"model-00001-of-00002.safetensors",)"
                R"("layer.1.weight":"model-00002-of-00002.safetensors")");
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir},
                         (index + ": weight_map: tensor layer.0.weight: not in shard model-00002-of-00002.safetensors").c_str(),
                         aq::error);
  }
  SUBCASE("a tensor stored in two shards") {
    aq::safetensors_writer second;
    second.add("layer.1.weight", {4}, std::span<const float>(twos));
    second.add("layer.0.weight", {2, 3}, std::span<const float>(ones));
    second.write(dir / "model-00002-of-00002.safetensors");
    write_index(good_map);
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir},
                         (index + ": tensor layer.0.weight is in two shards: model-00001-of-00002.safetensors and "
                                  "model-00002-of-00002.safetensors").c_str(),
                         aq::error);
  }
  SUBCASE("a shard tensor the index does not list") {
    write_index(R"("layer.0.weight":"model-00001-of-00002.safetensors","layer.1.weight":"model-00002-of-00002.safetensors")");
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir},
                         (index + ": tensor layer.0.bias of shard model-00001-of-00002.safetensors is not in weight_map").c_str(),
                         aq::error);
  }
  SUBCASE("index structure errors") {
    write_bytes(dir / "model.safetensors.index.json", R"({"metadata":{}})");
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir}, (index + ": weight_map: missing").c_str(), aq::error);
    write_index(R"("a":"../elsewhere.safetensors")");
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir},
                         (index + ": weight_map: tensor a: shard \"../elsewhere.safetensors\" must be a file name relative to "
                                  "the index").c_str(),
                         aq::error);
    write_index(R"("a":"model-00001-of-00002.safetensors","a":"model-00001-of-00002.safetensors")");
    CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir}, (index + ": weight_map: tensor a: listed twice").c_str(), aq::error);
  }
}

TEST_CASE("a directory with model.safetensors is a single-file checkpoint; an empty one is an error") {
  const fs::path dir = fresh_dir("single");
  CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir},
                       (dir.string() + ": no model.safetensors.index.json or model.safetensors in this directory").c_str(),
                       aq::error);
  aq::safetensors_writer writer;
  writer.add_rounded("w", aq::dtype_bf16, {2}, std::vector<float>{1.0f, 2.0f});
  writer.write(dir / "model.safetensors");
  const aq::safetensors_checkpoint checkpoint(dir);
  CHECK_FALSE(checkpoint.sharded());
  CHECK(checkpoint.tensors().size() == 1);
  CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir / "absent.safetensors"},
                       ((dir / "absent.safetensors").string() + ": cannot open: No such file or directory").c_str(), aq::error);
}

TEST_CASE("conversion checks the destination size and converts every source dtype") {
  const fs::path dir = fresh_dir("convert");
  std::vector<float> values(1000);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& v : values) v = normal(rng);
  aq::safetensors_writer writer;
  writer.add_rounded("bf", aq::dtype_bf16, {10, 100}, values);
  writer.add_rounded("h", aq::dtype_f16, {1000}, values);
  writer.write(dir / "model.safetensors");
  const aq::safetensors_file file(dir / "model.safetensors");
  const std::vector<float> bf = aq::to_float_vector(file.at("bf"));
  const std::vector<float> h = aq::to_float_vector(file.at("h"));
  for (std::size_t i = 0; i < values.size(); ++i) {
    REQUIRE(bf[i] == static_cast<float>(reference_bf16(aq::float_to_bf16(values[i]).bits)));
    REQUIRE(h[i] == static_cast<float>(reference_f16(reference_float_to_f16(values[i]))));
    // Storage error stays within half an ulp: 2^-8 relative for bf16 (8 significant bits).
    REQUIRE(std::fabs(bf[i] - values[i]) <= std::ldexp(std::fabs(values[i]), -8));
  }
  std::vector<float> too_small(999);
  CHECK_THROWS_WITH_AS(aq::convert_tensor(file.at("h"), std::span<float>(too_small)),
                       ((dir / "model.safetensors").string() + ": tensor h: destination holds 999 values, tensor [1000] has 1000")
                           .c_str(),
                       aq::error);
}

TEST_CASE("files written by the reference implementation read back, and the writer reproduces them byte for byte") {
  const fs::path fixture = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_tied" / "model.safetensors";
  const aq::safetensors_file file(fixture);
  CHECK(file.tensors().size() == 86);
  CHECK(file.metadata().at("format") == "pt");
  // Same tensors, same metadata through aq's writer: identical bytes (single dtype, so the
  // reference's dtype-then-name order equals aq's name order).
  aq::safetensors_writer writer;
  writer.set_metadata("format", "pt");
  for (const aq::tensor_view& t : file.tensors()) {
    writer.add(t.name, t.dtype, std::vector<std::int64_t>(t.shape.begin(), t.shape.end()), t.bytes);
  }
  CHECK(writer.serialize() == read_bytes(fixture));
}

TEST_CASE("integer tensors are refused by default and readable when the caller accepts them") {
  const fs::path fixture = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_tied.reference.safetensors";
  try {
    const aq::safetensors_file strict(fixture);
    FAIL("an I64 tensor was accepted by default");
  } catch (const aq::error& e) {
    CHECK(std::string(e.what()).find(": dtype I64 not supported (BF16, F16, F32)") != std::string::npos);
  }
  const aq::safetensors_file file(fixture, aq::readable_dtypes);
  const aq::tensor_view* ids = nullptr;
  for (const aq::tensor_view& t : file.tensors()) {
    if (t.dtype == aq::dtype_i64) ids = &t;
  }
  REQUIRE(ids != nullptr);
  const std::vector<std::int64_t> values = aq::to_int64_vector(*ids);
  CHECK(values.size() == static_cast<std::size_t>(ids->numel()));
  CHECK_THROWS_AS(aq::to_float_vector(*ids), aq::error);
  for (const aq::tensor_view& t : file.tensors()) {
    if (t.dtype == aq::dtype_f32) {
      CHECK_THROWS_AS(aq::to_int64_vector(t), aq::error);
      break;
    }
  }
}

TEST_CASE("an empty index, a FIFO or a directory in place of a checkpoint file is a one-line error, not a hang") {
  const fs::path dir = fresh_dir("not_regular");
  const std::vector<float> ones(4, 1.0f);
  aq::safetensors_writer writer;
  writer.add("w", {4}, std::span<const float>(ones));
  writer.write(dir / "model-00001-of-00001.safetensors");
  const fs::path index = dir / "model.safetensors.index.json";

  write_bytes(index, "");
  CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir}, (index.string() + ": empty file").c_str(), aq::error);
  fs::remove(index);
  REQUIRE(::mkfifo(index.c_str(), 0600) == 0);  // nobody writes: opening must not wait for a writer
  CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir}, (index.string() + ": not a regular file").c_str(), aq::error);
  fs::remove(index);

  write_bytes(index, R"({"weight_map":{"w":"model-00001-of-00001.safetensors"}})");
  CHECK(aq::safetensors_checkpoint(dir).tensors().size() == 1);
  const fs::path shard = dir / "model-00001-of-00001.safetensors";
  fs::remove(shard);
  REQUIRE(::mkfifo(shard.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir}, (shard.string() + ": not a regular file").c_str(), aq::error);
  fs::remove(shard);
  fs::create_directories(shard);
  CHECK_THROWS_WITH_AS(aq::safetensors_checkpoint{dir}, (shard.string() + ": not a regular file").c_str(), aq::error);
  CHECK_THROWS_WITH_AS(aq::safetensors_file{shard}, (shard.string() + ": not a regular file").c_str(), aq::error);
  write_bytes(dir / "empty.safetensors", "");
  CHECK_THROWS_WITH_AS(aq::safetensors_file{dir / "empty.safetensors"},
                       doctest::Contains("empty.safetensors: truncated: 0 bytes"), aq::error);
}

TEST_CASE("require_finite names the file, the tensor and the first NaN or infinity") {
  const fs::path dir = fresh_dir("finite");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  aq::safetensors_writer writer;
  writer.add_rounded("bf16.nan", aq::dtype_bf16, {3}, std::vector<float>{1.0f, nan, 2.0f});
  writer.add_rounded("f16.inf", aq::dtype_f16, {2}, std::vector<float>{-inf, 0.0f});
  writer.add("f32.inf", {2}, std::span<const float>(std::vector<float>{0.0f, inf}));
  writer.add_rounded("f16.big", aq::dtype_f16, {1}, std::vector<float>{65504.0f});
  writer.add_rounded("bf16.fine", aq::dtype_bf16, {2}, std::vector<float>{-3.0e38f, 1e-40f});
  writer.write(dir / "w.safetensors");
  const aq::safetensors_file file(dir / "w.safetensors");
  const std::string path = (dir / "w.safetensors").string();
  CHECK_THROWS_WITH_AS(aq::require_finite(file.at("bf16.nan")),
                       (path + ": tensor bf16.nan: nan at element 1 (weights must be finite)").c_str(), aq::error);
  CHECK_THROWS_WITH_AS(aq::require_finite(file.at("f16.inf")),
                       (path + ": tensor f16.inf: -inf at element 0 (weights must be finite)").c_str(), aq::error);
  CHECK_THROWS_WITH_AS(aq::require_finite(file.at("f32.inf")),
                       (path + ": tensor f32.inf: inf at element 1 (weights must be finite)").c_str(), aq::error);
  CHECK_NOTHROW(aq::require_finite(file.at("f16.big")));
  CHECK_NOTHROW(aq::require_finite(file.at("bf16.fine")));
  // A part of a tensor (as a loader stages it) is checked alone, elements counted from the tensor's start.
  const aq::tensor_view& staged = file.at("bf16.nan");
  CHECK_NOTHROW(aq::require_finite(staged, 0, staged.bytes.first(2)));
  CHECK_NOTHROW(aq::require_finite(staged, 4, staged.bytes.subspan(4)));
  const std::vector<std::byte> copy(staged.bytes.begin() + 2, staged.bytes.end());
  CHECK_THROWS_WITH_AS(aq::require_finite(staged, 2, copy),
                       (path + ": tensor bf16.nan: nan at element 1 (weights must be finite)").c_str(), aq::error);
}

}  // namespace test_safetensors
