#include "server/api_error.h"

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

std::string error_body(const ApiError& e) {
  return dump_json(e.to_json());
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace nc::server
