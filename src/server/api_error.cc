#include "server/api_error.h"

#include <fmt/format.h>

namespace nc::server {

nlohmann::json ApiError::to_json() const {
  nlohmann::json err = {
      {"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) err["param"] = param_;
  if (!code_.empty()) err["code"] = code_;
  return {{"error", std::move(err)}};
}

ApiError invalid_param(const std::string& param, const std::string& message,
                       const std::string& code) {
  return ApiError(400, message, "invalid_request_error", param, code);
}

int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument:
    case ErrorKind::ContextLength:
    case ErrorKind::Unsupported:
      return 400;
    case ErrorKind::NotFound:
      return 404;
    case ErrorKind::Overloaded:
      return 429;
    case ErrorKind::Internal:
      return 500;
  }
  return 500;
}

ApiError api_error_from(const Error& e, const std::string& param) {
  const int status = http_status(e.kind());
  switch (e.kind()) {
    case ErrorKind::ContextLength:
      return ApiError(status, e.what(), "invalid_request_error", param, "context_length_exceeded");
    case ErrorKind::Overloaded:
      return ApiError(status, e.what(), "rate_limit_error", param, "server_busy");
    case ErrorKind::Internal:
      return ApiError(status, fmt::format("internal error: {}", e.what()), "server_error");
    default:
      return ApiError(status, e.what(), "invalid_request_error", param);
  }
}

ApiError with_param(const ApiError& e, const std::string& param) {
  std::string message = e.what();
  if (param != e.param() && !e.param().empty()) {
    const std::string from = "'" + e.param() + "'", to = "'" + param + "'";
    for (size_t at = message.find(from); at != std::string::npos;
         at = message.find(from, at + to.size()))
      message.replace(at, from.size(), to);
  }
  return ApiError(e.status(), message, e.type(), param, e.code());
}

std::string error_body(const ApiError& e) {
  return dump_json(e.to_json());
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace nc::server
