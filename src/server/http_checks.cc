#include "server/http_checks.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "core/error.h"

namespace nc::server {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A plain decimal number below 2^63, or nothing.
std::optional<size_t> parse_length(const std::string& raw) {
  const std::string v = trim(raw);
  if (v.empty() || v.size() > 18) return std::nullopt;
  size_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + size_t(c - '0');
  }
  return n;
}

ApiError bad_framing(const std::string& message) {
  return ApiError(400, message, "invalid_request_error", "", "malformed_request");
}

}  // namespace

std::optional<ApiError> body_framing_error(const httplib::Request& req, size_t max_body_bytes) {
  const size_t n_te = req.get_header_value_count("Transfer-Encoding");
  const size_t n_cl = req.get_header_value_count("Content-Length");
  if (n_te > 0) {
    const std::string te = req.get_header_value("Transfer-Encoding");
    if (n_te > 1 || lower(trim(te)) != "chunked") {
      return bad_framing(fmt::format("unsupported Transfer-Encoding '{}' (only chunked)", te));
    }
    if (n_cl > 0) return bad_framing("both Transfer-Encoding and Content-Length are given");
    return std::nullopt;
  }
  if (n_cl == 0) return std::nullopt;
  std::optional<size_t> len;
  for (size_t i = 0; i < n_cl; ++i) {
    const std::string raw = req.get_header_value("Content-Length", i);
    const std::optional<size_t> v = parse_length(raw);
    if (!v) return bad_framing(fmt::format("malformed Content-Length '{}'", raw));
    if (len && *len != *v) return bad_framing("Content-Length headers that disagree");
    len = v;
  }
  if (*len > max_body_bytes) {
    return ApiError(413,
                    fmt::format("the request body of {} bytes exceeds the limit of {} bytes", *len,
                                max_body_bytes),
                    "invalid_request_error", "", "request_too_large");
  }
  return std::nullopt;
}

bool has_body(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding")) return true;
  const std::optional<size_t> len = parse_length(req.get_header_value("Content-Length"));
  return len && *len > 0;
}

CorsPolicy::CorsPolicy(const std::string& allowed_origins) {
  size_t start = 0;
  while (start <= allowed_origins.size()) {
    size_t end = allowed_origins.find(',', start);
    if (end == std::string::npos) end = allowed_origins.size();
    const std::string o = trim(allowed_origins.substr(start, end - start));
    start = end + 1;
    if (o.empty()) continue;
    if (o == "*") {
      any_ = true;
      continue;
    }
    NC_CHECK_AS(ErrorKind::InvalidArgument, o.find("://") != std::string::npos,
                "allowed origin '{}' is neither '*' nor scheme://host[:port]", o);
    origins_.push_back(o.back() == '/' ? o.substr(0, o.size() - 1) : o);
  }
}

std::string CorsPolicy::allow_origin(const std::string& origin) const {
  if (any_) return "*";
  if (origin.empty()) return "";
  return std::find(origins_.begin(), origins_.end(), origin) != origins_.end() ? origin : "";
}

void CorsPolicy::add_headers(const httplib::Request& req, httplib::Response& res) const {
  if (!enabled()) return;
  const std::string allow = allow_origin(req.get_header_value("Origin"));
  if (!any_) res.set_header("Vary", "Origin");
  if (allow.empty()) return;
  res.set_header("Access-Control-Allow-Origin", allow);
}

bool CorsPolicy::answer_preflight(const httplib::Request& req, httplib::Response& res) const {
  if (!enabled() || req.method != "OPTIONS" || !req.has_header("Access-Control-Request-Method")) {
    return false;
  }
  if (allow_origin(req.get_header_value("Origin")).empty()) {
    res.status = 403;
    res.set_content(
        error_body(
            ApiError(403, fmt::format("origin '{}' is not allowed", req.get_header_value("Origin")),
                     "invalid_request_error", "", "origin_not_allowed")),
        "application/json");
    return true;
  }
  res.status = 204;
  res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  const std::string asked = req.get_header_value("Access-Control-Request-Headers");
  res.set_header("Access-Control-Allow-Headers",
                 asked.empty() ? "Authorization, Content-Type, X-Session-Id" : asked);
  res.set_header("Access-Control-Max-Age", "600");
  return true;
}

}  // namespace nc::server
