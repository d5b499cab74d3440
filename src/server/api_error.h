// Errors the HTTP API returns, in OpenAI's JSON shape:
//   {"error": {"message": "...", "type": "...", "param": "..." | null, "code": "..." | null}}
//
// An nc::Error from the engine, the tokenizer or a loader becomes an ApiError by its kind alone
// (api_error_from): the server does not re-validate what the engine checked, it only says which
// HTTP status each kind of failure is.
//
//   ErrorKind        status  type                   code
//   InvalidArgument  400     invalid_request_error  null
//   ContextLength    400     invalid_request_error  context_length_exceeded
//   Unsupported      400     invalid_request_error  null
//   NotFound         404     invalid_request_error  null
//   Overloaded       429     rate_limit_error       server_busy  (as the server's full queue)
//   Internal         500     server_error           null         (message "internal error: ...")
#pragma once
#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nc::server {

// Holds its message in a std::string of its own (not std::runtime_error's shared, reference-
// counted one), so that copies handed from the engine thread to a handler thread share nothing.
class ApiError : public std::exception {
 public:
  ApiError(int status, std::string message, std::string type, std::string param = "",
           std::string code = "")
      : message_(std::move(message)),
        status_(status),
        type_(std::move(type)),
        param_(std::move(param)),
        code_(std::move(code)) {}

  const char* what() const noexcept override { return message_.c_str(); }
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }  // empty = null
  const std::string& code() const { return code_; }    // empty = null

  nlohmann::json to_json() const;

 private:
  std::string message_;
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the parameter at fault.
ApiError invalid_param(const std::string& param, const std::string& message,
                       const std::string& code = "");

// The same error naming `param` instead: where the message quotes the old name ('name'), the
// new one is quoted instead (an API that reads a request as another API's names its own fields).
ApiError with_param(const ApiError& e, const std::string& param);

// The HTTP status of an nc::Error of this kind (the table above).
int http_status(ErrorKind kind);

// The ApiError for an nc::Error, by its kind (the table above); `param` names the request field
// at fault where the caller knows it (the engine does not know JSON names).
ApiError api_error_from(const Error& e, const std::string& param = "");

// The body of an error response (serialized, invalid UTF-8 replaced).
std::string error_body(const ApiError& e);

// Serializes for the wire: never throws on invalid UTF-8 (replaces it with U+FFFD).
std::string dump_json(const nlohmann::json& j);
std::string dump_json(const nlohmann::ordered_json& j);

}  // namespace nc::server
