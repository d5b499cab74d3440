// Errors: every failure the user can cause is an nc::Error with a message naming what is wrong,
// and a kind saying what sort of failure it is, so that a caller (the HTTP server, the CLI) can
// answer it without re-validating what the engine already checked.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace nc {

enum class ErrorKind {
  Internal,         // a bug or a device failure: nothing the caller did (the default)
  InvalidArgument,  // a value out of range, a malformed input
  ContextLength,    // a prompt or prompt + max_tokens longer than the model's context
  Unsupported,      // a valid request this build, model or backend cannot serve
  NotFound,         // a file, model or id that does not exist
  Overloaded,       // the engine is at capacity now; the same request may succeed later
};

// "internal", "invalid_argument", ... (for logs and tests).
const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, ErrorKind kind = ErrorKind::Internal)
      : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// fail() with a kind: fail_as(ErrorKind::InvalidArgument, "temperature {} < 0", t).
template <typename... Args>
[[noreturn]] void fail_as(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...), kind);
}

inline const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Internal:
      return "internal";
    case ErrorKind::InvalidArgument:
      return "invalid_argument";
    case ErrorKind::ContextLength:
      return "context_length";
    case ErrorKind::Unsupported:
      return "unsupported";
    case ErrorKind::NotFound:
      return "not_found";
    case ErrorKind::Overloaded:
      return "overloaded";
  }
  return "internal";
}

}  // namespace nc

// NC_CHECK(cond, "format {}", args...): throws nc::Error with the message when cond is false.
#define NC_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::nc::fail(__VA_ARGS__); \
  } while (0)
// NC_CHECK_AS(kind, cond, "format {}", args...): the same with an ErrorKind.
#define NC_CHECK_AS(kind, cond, ...)                 \
  do {                                               \
    if (!(cond)) ::nc::fail_as((kind), __VA_ARGS__); \
  } while (0)
