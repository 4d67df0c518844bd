// Decoded RGB8 images: PNG and JPEG files read into height x width x 3 bytes, byte-identical to
// PIL, with grayscale, 16-bit, CMYK and alpha images converted as PIL + transformers convert them.
// First step of the image path: image file -> image_rgb8 -> Qwen3-VL preprocessing -> vision tower
// (image_rgb8 is declared with the JPEG decoder, io/image/jpeg.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "aq/core/error.hpp"
#include "aq/io/image/jpeg.hpp"
#include "aq/io/regular_file.hpp"

// JPEG goes through libjpeg-turbo (io/image/jpeg.hpp), the decoder PIL uses, because stb_image's IDCT
// and chroma upsampling differ from it by up to 2/255. PNG is lossless, so stb_image decodes it
// byte-identically to PIL (zlib is exact) and aq keeps it there rather than adding libpng.
// stb_image is a single-file C library. aq is header-only, so it compiles stb's implementation
// with STB_IMAGE_STATIC: every translation unit that includes this header gets a private
// (internal-linkage) copy, so two aq TUs never collide at link time and a program that also
// links its own stb keeps working. Costs: stb compiled once per including TU (PNG only).
// If stb_image.h was included before this header, or AQ_STB_IMAGE_EXTERNAL is defined, aq only
// uses the declarations and the program must provide one implementation (STB_IMAGE_IMPLEMENTATION
// in one of its own .cpp files).
#if defined(STBI_INCLUDE_STB_IMAGE_H) || defined(AQ_STB_IMAGE_EXTERNAL)
#include <stb/stb_image.h>
#else
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO  // aq reads the bytes itself (paths may not be narrow strings)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wduplicated-branches"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef STBI_NO_STDIO
#undef STBI_ONLY_PNG
#undef STB_IMAGE_IMPLEMENTATION
#undef STB_IMAGE_STATIC
#endif

namespace aq::io {

// What to do with an alpha channel. transformers' convert_to_rgb composites over opaque white
// (Image.alpha_composite) before the processor sees the pixels; PIL's convert("RGB") drops alpha.
enum class alpha_mode { composite_white, drop };

namespace detail {

// PIL's ImagingAlphaComposite of `src` over an opaque white pixel, in its integer arithmetic
// (7 extra precision bits, rounded division by 255), so results match byte for byte.
inline std::uint8_t composite_over_white(std::uint32_t value, std::uint32_t alpha) {
  if (alpha == 0) return 255;
  constexpr std::uint32_t precision_bits = 7;
  const std::uint32_t blend = 255u * (255u - alpha);
  const std::uint32_t outa255 = alpha * 255u + blend;
  const std::uint32_t coef1 = alpha * 255u * 255u * (1u << precision_bits) / outa255;
  const std::uint32_t coef2 = 255u * (1u << precision_bits) - coef1;
  const std::uint32_t tmp = value * coef1 + 255u * coef2 + (0x80u << precision_bits);
  return static_cast<std::uint8_t>((((tmp >> 8) + tmp) >> 8) >> precision_bits);
}

struct stbi_deleter {
  void operator()(void* p) const { stbi_image_free(p); }
};

}  // namespace detail

// The most pixels aq decodes: twice Pillow's Image.MAX_IMAGE_PIXELS, where Pillow raises
// DecompressionBombError, so aq accepts every image transformers' processor can open (108 MP phone
// photos included). The header is read first, so a larger image is refused before any pixel memory
// is allocated; at the limit the decoded RGB8 image is 537 MB (libjpeg's progressive coefficient
// buffers and stb_image's RGBA buffer come on top, each a few bytes per pixel).
inline constexpr std::uint64_t max_image_pixels = 2 * std::uint64_t{89478485};

namespace detail {

[[noreturn]] inline void image_too_large(const std::string& name, std::uint64_t width, std::uint64_t height) {
  throw error(too_many_pixels(name, width, height, max_image_pixels));
}

inline std::uint32_t big_endian32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

// A PNG's size from its IHDR chunk (the first chunk: signature, length, "IHDR", width, height),
// read by hand because stb_image reports an image it will not decode as "unknown image type".
// Returns false when the bytes do not start like a PNG.
inline bool png_size(std::span<const std::uint8_t> bytes, std::uint64_t& width, std::uint64_t& height) {
  static constexpr std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (bytes.size() < 24 || !std::equal(signature, signature + 8, bytes.begin())) return false;
  if (bytes[12] != 'I' || bytes[13] != 'H' || bytes[14] != 'D' || bytes[15] != 'R') return false;
  width = big_endian32(bytes.data() + 16);
  height = big_endian32(bytes.data() + 20);
  return true;
}

// Refuses a PNG whose chunk lengths run past the end of the file: stb_image trusts the length of an
// IDAT chunk and grows its buffer to it (2 GiB for an 82-byte file) before it notices the data is
// missing. Chunks are 4-byte length, 4-byte type, data, 4-byte CRC.
inline void check_png_chunks(std::span<const std::uint8_t> bytes, const std::string& name) {
  std::size_t at = 8;  // after the signature
  while (at + 8 <= bytes.size()) {
    const std::uint64_t length = big_endian32(bytes.data() + at);
    const std::string type(reinterpret_cast<const char*>(bytes.data() + at + 4), 4);
    if (length > bytes.size() - at - 8 || bytes.size() - at - 8 - length < 4) {
      throw error(name + ": cannot decode PNG: chunk '" + type + "' at byte " + std::to_string(at) + " claims " +
                  std::to_string(length) + " bytes, past the end of the file (" + std::to_string(bytes.size()) +
                  " bytes; truncated or corrupt)");
    }
    if (type == "IEND") return;
    at += 12 + static_cast<std::size_t>(length);
  }
}

}  // namespace detail

// Decodes PNG or JPEG bytes to RGB8. `name` (usually the path) is used in error messages.
// Conversions follow PIL: gray -> (g,g,g); 16-bit RGB(A) and gray+alpha keep the high byte;
// 16-bit gray ("I;16") saturates at 255 as PIL's I;16 -> RGB conversion does; JPEG as
// io/image/jpeg.hpp (libjpeg-turbo with Pillow's settings). JPEG has no alpha, so `alpha` is moot there.
// Images of more than max_image_pixels are refused from their header.
inline image_rgb8 decode_image(std::span<const std::uint8_t> bytes, const std::string& name,
                               alpha_mode alpha = alpha_mode::composite_white) {
  if (bytes.empty()) throw error(name + ": empty image file");
  if (is_jpeg(bytes)) return decode_jpeg(bytes, name, max_image_pixels);
  std::uint64_t png_w = 0, png_h = 0;
  if (detail::png_size(bytes, png_w, png_h)) {
    if (png_w * png_h > max_image_pixels) detail::image_too_large(name, png_w, png_h);
    detail::check_png_chunks(bytes, name);
  }
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX)) throw error(name + ": image file larger than 2 GiB");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  if (stbi_info_from_memory(data, len, &w, &h, &channels) == 0) {
    throw error(name + ": not a readable PNG or JPEG image (" + stbi_failure_reason() + ")");
  }
  if (static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) > max_image_pixels) {
    detail::image_too_large(name, static_cast<std::uint64_t>(w), static_cast<std::uint64_t>(h));
  }
  const bool sixteen = stbi_is_16_bit_from_memory(data, len) != 0;
  const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
  image_rgb8 img;
  img.width = w;
  img.height = h;
  img.pixels.resize(n * 3);
  // stb returns RGBA (4 samples a pixel), or null; convert straight into the RGB8 image.
  auto to_rgb = [&](auto* rgba, auto to_byte) {
    const std::unique_ptr<void, detail::stbi_deleter> owner(rgba);
    if (rgba == nullptr) throw error(name + ": cannot decode PNG (" + stbi_failure_reason() + ")");
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t a = to_byte(rgba[i * 4 + 3], true);
      for (std::size_t c = 0; c < 3; ++c) {
        const std::uint8_t v = to_byte(rgba[i * 4 + c], false);
        img.pixels[i * 3 + c] =
            (alpha == alpha_mode::composite_white && a != 255) ? detail::composite_over_white(v, a) : v;
      }
    }
  };
  if (sixteen) {
    to_rgb(stbi_load_16_from_memory(data, len, &w, &h, &channels, 4), [&](std::uint16_t v, bool is_alpha) {
      const bool gray = channels == 1;  // set by the load
      return (gray && !is_alpha) ? static_cast<std::uint8_t>(v > 255 ? 255 : v) : static_cast<std::uint8_t>(v >> 8);
    });
  } else {
    to_rgb(stbi_load_from_memory(data, len, &w, &h, &channels, 4), [](std::uint8_t v, bool) { return v; });
  }
  return img;
}

// Reads and decodes an image file; errors name the file. Only a regular file is opened (a FIFO
// would block), and its size is checked before a byte is read.
inline image_rgb8 load_image(const std::filesystem::path& path, alpha_mode alpha = alpha_mode::composite_white) {
  const regular_file file(path);
  if (file.size() > std::size_t{INT32_MAX}) {
    throw error(path.string() + ": image file is " + std::to_string(file.size()) + " bytes; at most " +
                std::to_string(INT32_MAX) + " bytes are read");
  }
  const std::string content = file.read_all();
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(content.data()), content.size());
  return decode_image(bytes, path.string(), alpha);
}

}  // namespace aq::io
