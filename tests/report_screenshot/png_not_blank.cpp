// Asserts that a screenshot shows something: the PNG decodes (stb_image, through aq's image
// reader), has the expected size, enough non-white pixels and several distinct colours. A blank
// or error page (white, or one colour of text) fails.
//   png_not_blank FILE.png MIN_WIDTH MIN_HEIGHT
#include <cstdint>
#include <exception>
#include <iostream>
#include <set>
#include <string>

#include "aq/io/image/image.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: png_not_blank FILE.png MIN_WIDTH MIN_HEIGHT\n";
    return 2;
  }
  try {
    const aq::io::image_rgb8 image = aq::io::load_image(argv[1]);
    std::size_t non_white = 0;
    std::set<std::uint32_t> colours;  // quantized to 5 bits a channel, so anti-aliasing does not count
    for (int y = 0; y < image.height; ++y) {
      for (int x = 0; x < image.width; ++x) {
        const int r = image.at(y, x, 0), g = image.at(y, x, 1), b = image.at(y, x, 2);
        if (r < 235 || g < 235 || b < 235) ++non_white;
        colours.insert(static_cast<std::uint32_t>((r >> 3) << 10 | (g >> 3) << 5 | (b >> 3)));
      }
    }
    const double pixels = static_cast<double>(image.width) * image.height;
    const double fraction = pixels > 0 ? static_cast<double>(non_white) / pixels : 0.0;
    std::cout << argv[1] << ": " << image.width << "x" << image.height << ", non-white fraction " << fraction << ", "
              << colours.size() << " distinct colours\n";
    bool ok = true;
    if (image.width < std::stoi(argv[2]) || image.height < std::stoi(argv[3])) {
      std::cerr << "png_not_blank: image smaller than " << argv[2] << "x" << argv[3] << "\n";
      ok = false;
    }
    if (fraction < 0.03) {
      std::cerr << "png_not_blank: only " << fraction << " of the pixels are not white (want >= 0.03)\n";
      ok = false;
    }
    if (colours.size() < 16) {
      std::cerr << "png_not_blank: only " << colours.size() << " distinct colours (want >= 16)\n";
      ok = false;
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "png_not_blank: " << e.what() << "\n";
    return 1;
  }
}
