// Qwen3-VL image preprocessing, as transformers' Qwen2-VL image processor does it for Qwen3-VL:
// smart_resize to multiples of patch*merge, antialiased bicubic resize, (v/255 - 0.5)/0.5,
// two identical temporal frames, and 2x2-merge-block patch flattening -> pixel_values + grid_thw.
// Sits between image decoding (io/image/image.hpp) and the vision tower.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/image/image.hpp"

namespace aq::io {

// Which transformers image-processor backend to reproduce byte for byte. Both resize with the
// same antialiased bicubic (a = -0.5) weights and integer arithmetic; they differ in the
// fixed-point precision of the weights and in how the float normalisation is written.
//  - torchvision: the default for Qwen3-VL (preprocessor_config names Qwen2VLImageProcessorFast;
//    transformers 5 calls it the torchvision backend). torch's uint8 antialiased resize: int16
//    weights whose precision is chosen from the largest weight; x = (v - 127.5f) / 127.5f.
//  - pil: the slow / PIL backend (and qwen-vl-utils' Image.resize). PIL's 22-bit weights;
//    x = (float(v / 255.0) - 0.5f) / 0.5f.
enum class image_backend { torchvision, pil };

struct qwen3_vl_image_options {
  int patch_size = 16;
  int temporal_patch_size = 2;
  int merge_size = 2;
  // Qwen3-VL-4B preprocessor_config "size": {"shortest_edge": 65536, "longest_edge": 16777216}.
  std::int64_t min_pixels = 65536;
  std::int64_t max_pixels = 16777216;
  bool do_resize = true;
  image_backend backend = image_backend::torchvision;
};

// transformers' smart_resize (Qwen2-VL image processor): sides rounded half-to-even to multiples
// of `factor`, then scaled so that min_pixels <= h*w <= max_pixels keeping the aspect ratio.
// Returns {height, width}. `name` labels errors.
inline std::pair<int, int> smart_resize(int height, int width, int factor, std::int64_t min_pixels,
                                        std::int64_t max_pixels, const std::string& name = "image") {
  if (height <= 0 || width <= 0 || factor <= 0) {
    throw error(name + ": smart_resize needs positive sizes, got " + std::to_string(height) + "x" +
                std::to_string(width) + " factor " + std::to_string(factor));
  }
  const double h = height, w = width, f = factor;
  if (std::max(h, w) / std::min(h, w) > 200.0) {
    throw error(name + ": absolute aspect ratio must be at most 200, got " + std::to_string(height) + "x" +
                std::to_string(width));
  }
  // Python's round() is half-to-even: nearbyint in the default rounding mode.
  double h_bar = std::nearbyint(h / f) * f;
  double w_bar = std::nearbyint(w / f) * f;
  if (h_bar * w_bar > static_cast<double>(max_pixels)) {
    const double beta = std::sqrt((h * w) / static_cast<double>(max_pixels));
    h_bar = std::max(f, std::floor(h / beta / f) * f);
    w_bar = std::max(f, std::floor(w / beta / f) * f);
  } else if (h_bar * w_bar < static_cast<double>(min_pixels)) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    h_bar = std::ceil(h * beta / f) * f;
    w_bar = std::ceil(w * beta / f) * f;
  }
  return {static_cast<int>(h_bar), static_cast<int>(w_bar)};
}

namespace detail {

// Keys' cubic convolution kernel with a = -0.5 (PIL's and torch's antialiased bicubic).
inline double bicubic_filter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Fixed-point resampling weights for one axis: output i reads inputs [first[i], first[i]+count[i]).
struct axis_weights {
  std::vector<std::int64_t> first;
  std::vector<std::int64_t> count;
  std::vector<std::int32_t> k;  // out_size * ksize, fixed point with `precision` fraction bits
  int ksize = 0;
  int precision = 0;
};

inline axis_weights make_axis_weights(int in_size, int out_size, image_backend backend) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = scale >= 1.0 ? scale : 1.0;
  const double support = 2.0 * filterscale;
  axis_weights aw;
  // Both compute the window as ceil(support)*2+1; torch rounds `support` through float first.
  aw.ksize = backend == image_backend::torchvision ? static_cast<int>(std::ceil(static_cast<float>(support))) * 2 + 1
                                                   : static_cast<int>(std::ceil(support)) * 2 + 1;
  const auto n = static_cast<std::size_t>(out_size);
  const auto ks = static_cast<std::size_t>(aw.ksize);
  std::vector<double> w(n * ks, 0.0);
  aw.first.resize(n);
  aw.count.resize(n);
  double w_max = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const double inv = 1.0 / filterscale;
    const std::int64_t xmin = std::max<std::int64_t>(static_cast<std::int64_t>(center - support + 0.5), 0);
    std::int64_t xsize = std::min<std::int64_t>(static_cast<std::int64_t>(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp<std::int64_t>(xsize, 0, aw.ksize);
    double total = 0.0;
    for (std::int64_t j = 0; j < xsize; ++j) {
      const double v = bicubic_filter((static_cast<double>(j + xmin) - center + 0.5) * inv);
      w[i * ks + static_cast<std::size_t>(j)] = v;
      total += v;
    }
    for (std::int64_t j = 0; j < xsize; ++j) {
      double& v = w[i * ks + static_cast<std::size_t>(j)];
      if (total != 0.0) v /= total;
      w_max = std::max(w_max, v);
    }
    aw.first[i] = xmin;
    aw.count[i] = xsize;
  }
  if (backend == image_backend::pil) {
    aw.precision = 22;  // PIL: 32 - 8 - 2 bits
  } else {
    // torch's int16 weights: the most fraction bits (< 22) that keep 2 * max weight below 2^15.
    int p = 0;
    for (; p < 22; ++p) {
      const int next = static_cast<int>(0.5 + w_max * static_cast<double>(1 << (p + 1)));
      if (next >= (1 << 15)) break;
    }
    aw.precision = p;
  }
  aw.k.resize(n * ks);
  const double one = static_cast<double>(1 << aw.precision);
  for (std::size_t i = 0; i < n * ks; ++i) {
    const double v = w[i] * one;
    aw.k[i] = static_cast<std::int32_t>(v < 0 ? -0.5 + v : 0.5 + v);
  }
  return aw;
}

inline std::uint8_t fixed_to_u8(std::int64_t acc, int precision) {
  const std::int64_t v = acc >> precision;  // arithmetic shift: floor, as the references do
  return static_cast<std::uint8_t>(std::clamp<std::int64_t>(v, 0, 255));
}

// One pass of the separable resize: along x (to `out_size` columns) or along y (to `out_size`
// rows). Either way a line of the axis is a run of `group`-byte groups (a pixel along x, a whole
// row along y), and each output group mixes its input groups byte by byte.
inline image_rgb8 resample_axis(const image_rgb8& in, int out_size, bool along_x, image_backend backend) {
  const int in_size = along_x ? in.width : in.height;
  const axis_weights aw = make_axis_weights(in_size, out_size, backend);
  image_rgb8 out;
  out.width = along_x ? out_size : in.width;
  out.height = along_x ? in.height : out_size;
  out.pixels.resize(static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.height) * 3);
  const std::size_t group = along_x ? 3 : static_cast<std::size_t>(in.width) * 3;
  const std::size_t lines = along_x ? static_cast<std::size_t>(in.height) : 1;
  const std::int64_t half = std::int64_t{1} << (aw.precision - 1);
  for (std::size_t line = 0; line < lines; ++line) {
    const std::uint8_t* src = in.pixels.data() + line * static_cast<std::size_t>(in_size) * group;
    std::uint8_t* dst = out.pixels.data() + line * static_cast<std::size_t>(out_size) * group;
    for (std::size_t o = 0; o < static_cast<std::size_t>(out_size); ++o) {
      const std::int32_t* k = aw.k.data() + o * static_cast<std::size_t>(aw.ksize);
      const std::uint8_t* first = src + static_cast<std::size_t>(aw.first[o]) * group;
      for (std::size_t i = 0; i < group; ++i) {
        std::int64_t acc = half;
        const std::uint8_t* tap = first + i;
        for (std::int64_t j = 0; j < aw.count[o]; ++j, tap += group) acc += std::int64_t{*tap} * k[j];
        dst[o * group + i] = fixed_to_u8(acc, aw.precision);
      }
    }
  }
  return out;
}

}  // namespace detail

// Antialiased bicubic resize of an RGB8 image with the chosen backend's integer arithmetic:
// horizontal pass first (to uint8), then vertical; an axis whose size is unchanged is not touched.
// The source is read in place: besides it, memory holds the intermediate (out_width x source
// height) and the output, all 3 bytes a pixel.
inline image_rgb8 resize_bicubic(const image_rgb8& src, int out_height, int out_width,
                                 image_backend backend = image_backend::torchvision) {
  if (out_height <= 0 || out_width <= 0 || src.width <= 0 || src.height <= 0) {
    throw error("resize_bicubic: sizes must be positive, got " + std::to_string(src.height) + "x" +
                std::to_string(src.width) + " -> " + std::to_string(out_height) + "x" + std::to_string(out_width));
  }
  if (out_width == src.width) {
    return out_height == src.height ? src : detail::resample_axis(src, out_height, false, backend);
  }
  image_rgb8 horizontal = detail::resample_axis(src, out_width, true, backend);
  if (out_height == src.height) return horizontal;
  return detail::resample_axis(horizontal, out_height, false, backend);
}

// The vision-tower inputs of a list of images, concatenated in order, as the processor returns
// them: pixel_values [rows, cols] row-major float32 and image_grid_thw [n_images, 3].
struct vision_inputs {
  std::vector<float> pixel_values;
  std::int64_t rows = 0;
  std::int64_t cols = 0;  // 3 * temporal_patch_size * patch_size^2 (1536 for Qwen3-VL)
  std::vector<std::array<std::int64_t, 3>> grid_thw;
};

// Number of <|image_pad|> tokens one image occupies in the text: t*h*w / merge^2.
inline std::int64_t image_token_count(const std::array<std::int64_t, 3>& grid_thw, int merge_size) {
  return grid_thw[0] * grid_thw[1] * grid_thw[2] / (std::int64_t{merge_size} * merge_size);
}

// Normalised value of one byte, with the chosen backend's float formula (mean = std = 0.5).
inline float normalize_pixel(std::uint8_t v, image_backend backend) {
  if (backend == image_backend::torchvision) {
    // rescale fused into normalize: mean*255 = std*255 = 127.5, in float32
    return (static_cast<float>(v) - 127.5f) / 127.5f;
  }
  const float scaled = static_cast<float>(static_cast<double>(v) * (1.0 / 255.0));
  return (scaled - 0.5f) / 0.5f;
}

namespace detail {

// The processor's output size of an image: smart_resize, or the image's own size when do_resize
// is off (then refused above max_pixels, so the patch count stays bounded by max_pixels either way).
inline std::pair<int, int> qwen3_vl_size(const image_rgb8& img, const qwen3_vl_image_options& o,
                                         const std::string& name) {
  if (o.do_resize) {
    return smart_resize(img.height, img.width, o.patch_size * o.merge_size, o.min_pixels, o.max_pixels, name);
  }
  if (std::int64_t{img.width} * img.height > o.max_pixels) {
    throw error(name + ": image is " + std::to_string(img.width) + " x " + std::to_string(img.height) +
                " pixels, more than max_pixels " + std::to_string(o.max_pixels) + ", and do_resize is off");
  }
  return {img.height, img.width};
}

}  // namespace detail

// The image resized as the processor would (smart_resize + bicubic); exposed for tests and tools.
inline image_rgb8 qwen3_vl_resize(const image_rgb8& img, const qwen3_vl_image_options& o,
                                  const std::string& name = "image") {
  const auto [h, w] = detail::qwen3_vl_size(img, o, name);
  if (h == img.height && w == img.width) return img;
  return resize_bicubic(img, h, w, o.backend);
}

// Preprocesses one still image and appends its patches and grid to `out`.
// Memory: the decoded image is only read; the resized one (3 bytes a pixel) and its patches
// (float32, 3 channels x temporal_patch_size: 24 bytes a pixel) are sized by the processor's
// output, at most max_pixels pixels (smart_resize): 16.7 M pixels, 64k patches and 403 MB of
// pixel_values for Qwen3-VL's preprocessor_config. No float copy of the full-resolution image is made.
inline void append_image(vision_inputs& out, const image_rgb8& img, const qwen3_vl_image_options& o,
                         const std::string& name = "image") {
  const auto [out_h, out_w] = detail::qwen3_vl_size(img, o, name);
  image_rgb8 resized;
  if (out_h != img.height || out_w != img.width) resized = resize_bicubic(img, out_h, out_w, o.backend);
  const image_rgb8& r = (out_h != img.height || out_w != img.width) ? resized : img;
  const int ps = o.patch_size, ms = o.merge_size, tp = o.temporal_patch_size;
  if (r.height % (ps * ms) != 0 || r.width % (ps * ms) != 0) {
    throw error(name + ": image size " + std::to_string(r.height) + "x" + std::to_string(r.width) +
                " is not a multiple of patch_size*merge_size = " + std::to_string(ps * ms));
  }
  const std::int64_t gh = r.height / ps, gw = r.width / ps, gt = 1;  // one frame, padded to tp frames
  const std::int64_t cols = std::int64_t{3} * tp * ps * ps;
  if (out.cols != 0 && out.cols != cols) {
    throw error(name + ": pixel_values columns " + std::to_string(cols) + " differ from earlier images' " +
                std::to_string(out.cols));
  }
  out.cols = cols;
  const std::int64_t rows = gt * gh * gw;
  const std::size_t base = out.pixel_values.size();
  out.pixel_values.resize(base + static_cast<std::size_t>(rows * cols));
  float* dst = out.pixel_values.data() + base;
  // Row order: 2x2 merge blocks in raster order, the 4 patches of a block consecutive;
  // column order: (channel, frame, py, px) = the Conv3d weight layout.
  std::int64_t row = 0;
  for (std::int64_t bh = 0; bh < gh / ms; ++bh) {
    for (std::int64_t bw = 0; bw < gw / ms; ++bw) {
      for (std::int64_t mh = 0; mh < ms; ++mh) {
        for (std::int64_t mw = 0; mw < ms; ++mw, ++row) {
          const std::int64_t y0 = (bh * ms + mh) * ps, x0 = (bw * ms + mw) * ps;
          float* d = dst + row * cols;
          for (int c = 0; c < 3; ++c) {
            for (int t = 0; t < tp; ++t) {
              for (int py = 0; py < ps; ++py) {
                for (int px = 0; px < ps; ++px) {
                  *d++ = normalize_pixel(r.at(static_cast<int>(y0 + py), static_cast<int>(x0 + px), c), o.backend);
                }
              }
            }
          }
        }
      }
    }
  }
  out.rows += rows;
  out.grid_thw.push_back({gt, gh, gw});
}

inline vision_inputs preprocess_images(const std::vector<image_rgb8>& images, const qwen3_vl_image_options& o = {}) {
  vision_inputs v;
  for (std::size_t i = 0; i < images.size(); ++i) append_image(v, images[i], o, "image " + std::to_string(i));
  return v;
}

}  // namespace aq::io
