// A completions batch answered as one response (server/completion_batch.h): Server::Impl's part.
#include <ctime>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "server/completion_batch.h"
#include "server/json_fields.h"
#include "server/response_builder.h"
#include "server/server_impl.h"

namespace nc::server {
namespace {

// An error of the batch's i-th prompt's request, naming that prompt where the error named the
// prompt, or, a 400, nothing (the engine's own checks of a prompt: its ids, its length).
ApiError for_prompt(const ApiError& e, size_t i) {
  const std::string name = fmt::format("prompt[{}]", i);
  if (e.param() == "prompt") return with_param(e, name);
  if (e.param().empty() && e.status() == 400)
    return ApiError(e.status(), fmt::format("{}: {}", name, e.what()), e.type(), name, e.code());
  return e;
}

}  // namespace

void Server::Impl::generate_batch(ParsedRequest pr, const Request& req, Response& res) {
  if (pr.stream) throw unsupported("stream", "streaming a batch of several prompts");
  check_model(pr.model);
  prepare_structured(pr);  // one grammar for every prompt
  const ResponseShape shape = ResponseShape::of(pr);
  const ResponseMeta meta{pr.kind, new_response_id(pr.kind), int64_t(std::time(nullptr)),
                          model_name};
  std::string session = req.get_header_value("X-Session-Id");
  if (session.empty()) session = pr.user;
  std::vector<ParsedRequest> prompts = split_batch(std::move(pr));
  // All submitted before any is waited for: the engine batches them. A guard cancels every
  // request not answered (the client left, or an earlier one failed).
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::vector<std::unique_ptr<CancelGuard>> guards;
  for (ParsedRequest& p : prompts) {
    handles.push_back(loop.submit(std::move(p), session));
    guards.push_back(std::make_unique<CancelGuard>(handles.back()));
  }
  ClientConnection conn(req);
  std::vector<nlohmann::ordered_json> parts;
  for (size_t i = 0; i < handles.size(); ++i) {
    try {
      StreamEvent ev;
      if (!wait_event(*handles[i], conn, ev)) return;  // the client left
      if (ev.kind == StreamEvent::Kind::Error) {
        guards[i]->disarm();
        throw *ev.error;
      }
      ResponseBuilder b(meta, shape, ev);
      if (!collect_whole(b, *handles[i], *guards[i], conn)) return;
      parts.push_back(b.response());
    } catch (const ApiError& e) {
      throw for_prompt(e, i);
    }
  }
  send_ordered_json(res, 200, merge_batch(parts, shape.n));
}

}  // namespace nc::server
