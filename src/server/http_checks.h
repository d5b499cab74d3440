// Checks on a request's HTTP framing made before its body is read, and the CORS policy.
//
// body_framing_error: the header alone decides whether a body may be read at all. A
// Content-Length that is not a plain decimal number (negative, signed, empty, repeated with
// different values, beyond 2^63) is a 400; a Transfer-Encoding other than "chunked", or one
// given together with a Content-Length, is a 400 (the framing would be ambiguous); an announced
// length over the cap is a 413 at once, before any of the body is read. A chunked body has no
// announced length: its cap is held while it is read (see the POST routes in server.cc).
//
// CorsPolicy: --allowed-origins as vLLM names it, a comma list of origins or "*". Empty (the
// default) means no CORS headers at all.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>

#include "server/api_error.h"

namespace nc::server {

std::optional<ApiError> body_framing_error(const httplib::Request& req, size_t max_body_bytes);

// True when the request carries a body (a Content-Length above 0, or chunked).
bool has_body(const httplib::Request& req);

class CorsPolicy {
 public:
  CorsPolicy() = default;
  // "https://a.example, https://b.example" or "*"; empty = CORS off. Throws nc::Error naming an
  // origin that is not "*" and has no scheme.
  explicit CorsPolicy(const std::string& allowed_origins);

  bool enabled() const { return any_ || !origins_.empty(); }
  // The Access-Control-Allow-Origin value for a request from `origin` ("" = none).
  std::string allow_origin(const std::string& origin) const;
  // Adds the CORS headers for the request's Origin to the response (nothing when off).
  void add_headers(const httplib::Request& req, httplib::Response& res) const;
  // Answers a preflight (OPTIONS with Access-Control-Request-Method): 204 with the allowed
  // methods and headers, or 403 for an origin not allowed. False when `req` is no preflight or
  // CORS is off.
  bool answer_preflight(const httplib::Request& req, httplib::Response& res) const;

 private:
  bool any_ = false;
  std::vector<std::string> origins_;
};

}  // namespace nc::server
