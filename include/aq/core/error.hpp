// aq's one exception type. Messages name the file, tensor or field and what was expected,
// so a user can act on a single line; the library never calls exit() or asserts on input.
#pragma once

#include <stdexcept>
#include <string>

namespace aq {

class error : public std::runtime_error {
 public:
  explicit error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace aq
