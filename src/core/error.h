// Errors: every failure the user can cause is an nc::Error with a message naming what is wrong.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace nc {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace nc

// NC_CHECK(cond, "format {}", args...): throws nc::Error with the message when cond is false.
#define NC_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::nc::fail(__VA_ARGS__); \
  } while (0)
