// JPEG decoding through libjpeg-turbo, configured as Pillow's JPEG decoder is, so decoded bytes
// equal what PIL (and so transformers' image processors) see. Used by io/image/image.hpp; the result
// goes on to Qwen3-VL preprocessing.
#pragma once

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // jpeglib.h uses FILE and size_t without including their headers
#include <span>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

#include "aq/core/error.hpp"

namespace aq::io {

// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC), the layout PIL and numpy use:
// what the JPEG decoder here and the PNG decoder of io/image/image.hpp produce.
struct image_rgb8 {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // height * width * 3

  std::uint8_t at(int y, int x, int c) const {
    return pixels[(static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3 +
                  static_cast<std::size_t>(c)];
  }
};

// JPEG files start with SOI followed by a marker; PIL's JpegImagePlugin accepts the same prefix.
inline bool is_jpeg(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

namespace detail {

// The refusal of an image whose header declares more pixels than are decoded (shared with PNG).
inline std::string too_many_pixels(const std::string& name, std::uint64_t width, std::uint64_t height,
                                   std::uint64_t max_pixels) {
  return name + ": image is " + std::to_string(width) + " x " + std::to_string(height) + " pixels; at most " +
         std::to_string(max_pixels) + " pixels are decoded";
}

// libjpeg reports fatal errors through error_exit, which must not return: it longjmps back to
// the decode routine (C++ exceptions cannot cross libjpeg's C frames). pub must be first: libjpeg
// hands the callbacks a pointer to it.
struct jpeg_error_state {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
  bool ended_early = false;  // the data ran out before the end-of-image marker
};

inline void jpeg_on_error(j_common_ptr cinfo) {
  auto* state = reinterpret_cast<jpeg_error_state*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, state->message);
  std::longjmp(state->jump, 1);
}

// Warnings (level -1) are corrupt-data notices libjpeg recovers from; Pillow silences them and
// keeps the pixels, so aq does too. Running out of data is different: libjpeg would pad with a
// fake end marker and grey rows, while Pillow's suspending reader raises "image file is
// truncated" (even when only the final EOI marker is missing), so aq fails as well.
inline void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    reinterpret_cast<jpeg_error_state*>(cinfo->err)->ended_early = true;
  }
}

// Owns the libjpeg state, so every exit path (error, exception, success) releases it.
struct jpeg_decoder {
  jpeg_decompress_struct cinfo;
  jpeg_error_state error;
  std::vector<std::uint8_t> row;
  jpeg_decoder() {
    std::fill_n(reinterpret_cast<unsigned char*>(&cinfo), sizeof cinfo, 0);
    cinfo.err = jpeg_std_error(&error.pub);
    error.pub.error_exit = jpeg_on_error;
    error.pub.emit_message = jpeg_on_message;
  }
  jpeg_decoder(const jpeg_decoder&) = delete;
  jpeg_decoder& operator=(const jpeg_decoder&) = delete;
  // Safe also when creation never ran or failed: libjpeg frees nothing while cinfo.mem is null.
  ~jpeg_decoder() { jpeg_destroy_decompress(&cinfo); }
};

// PIL's MULDIV255: a*b/255 rounded, in integers.
inline int muldiv255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

// Pillow's "CMYK;I" unpacking (every sample inverted: it assumes Adobe's inverted CMYK for every
// 4-component JPEG) followed by its CMYK -> RGB conversion.
inline void cmyk_inverted_to_rgb(const std::uint8_t* in, std::uint8_t* out, std::size_t pixels) {
  for (std::size_t i = 0; i < pixels; ++i, in += 4, out += 3) {
    const int nk = in[3];  // 255 - (255 - k)
    for (int c = 0; c < 3; ++c) {
      const int v = 255 - in[c];
      out[c] = static_cast<std::uint8_t>(std::clamp(nk - muldiv255(v, nk), 0, 255));
    }
  }
}

// Everything that can longjmp happens in here; it holds no object with a destructor, and after a
// longjmp reads only memory owned by the caller. Returns false on a libjpeg error; an image too
// large or of an unsupported component count stops after the header (the caller refuses it).
inline bool jpeg_run(jpeg_decoder* d, const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels,
                     image_rgb8* out) {
  if (setjmp(d->error.jump) != 0) return false;
  jpeg_create_decompress(&d->cinfo);  // may fail too (out of memory, library version mismatch)
  jpeg_mem_src(&d->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d->cinfo, TRUE);
  const int components = d->cinfo.num_components;
  const std::uint64_t pixels = std::uint64_t(d->cinfo.image_width) * std::uint64_t(d->cinfo.image_height);
  if (pixels > max_pixels || (components != 1 && components != 3 && components != 4)) return true;
  // Pillow's settings: it leaves libjpeg's defaults (JDCT_ISLOW, fancy upsampling, no scaling;
  // only draft mode changes them) and asks for L, RGB or CMYK by component count, trusting
  // libjpeg's guess of the stored colour space (JFIF/Adobe markers, so YCCK becomes CMYK).
  d->cinfo.dct_method = JDCT_ISLOW;
  d->cinfo.do_fancy_upsampling = TRUE;
  d->cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_start_decompress(&d->cinfo);
  const std::size_t w = d->cinfo.output_width, h = d->cinfo.output_height;
  const std::size_t n = static_cast<std::size_t>(d->cinfo.output_components);
  out->width = static_cast<int>(w);
  out->height = static_cast<int>(h);
  out->pixels.resize(w * h * 3);
  d->row.resize(w * n);
  while (d->cinfo.output_scanline < h && !d->error.ended_early) {
    const std::size_t y = d->cinfo.output_scanline;
    JSAMPROW rows[1] = {d->row.data()};
    if (jpeg_read_scanlines(&d->cinfo, rows, 1) != 1) break;
    std::uint8_t* dst = out->pixels.data() + y * w * 3;
    if (n == 3) {
      std::copy(d->row.begin(), d->row.end(), dst);
    } else if (n == 1) {
      for (std::size_t x = 0; x < w; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = d->row[x];
    } else {
      cmyk_inverted_to_rgb(d->row.data(), dst, w);
    }
  }
  if (!d->error.ended_early) jpeg_finish_decompress(&d->cinfo);
  return true;
}

}  // namespace detail

// Decodes a baseline or progressive 8-bit JPEG to RGB as Pillow does: gray -> (g,g,g), 3
// components -> RGB (YCbCr converted by libjpeg), 4 components -> Pillow's inverted-CMYK -> RGB.
// Errors (corrupt, truncated, unsupported, more than max_pixels, checked from the
// header before any pixel memory is allocated) name `name`.
inline image_rgb8 decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& name,
                                std::uint64_t max_pixels) {
  detail::jpeg_decoder d;
  image_rgb8 out;
  if (!detail::jpeg_run(&d, bytes.data(), bytes.size(), max_pixels, &out)) {
    throw error(name + ": cannot decode JPEG (" + d.error.message + ")");
  }
  if (std::uint64_t(d.cinfo.image_width) * std::uint64_t(d.cinfo.image_height) > max_pixels) {
    throw error(detail::too_many_pixels(name, d.cinfo.image_width, d.cinfo.image_height, max_pixels));
  }
  const int components = d.cinfo.num_components;
  if (components != 1 && components != 3 && components != 4) {
    throw error(name + ": JPEG with " + std::to_string(components) + " components; expected 1 (gray), 3 or 4 (CMYK)");
  }
  if (d.error.ended_early) {
    throw error(name + ": truncated JPEG: the data ends before the end-of-image marker (" +
                std::to_string(bytes.size()) + " bytes, decoding stopped at row " +
                std::to_string(d.cinfo.output_scanline) + " of " + std::to_string(d.cinfo.output_height) + ")");
  }
  return out;
}

}  // namespace aq::io
