// Streamed tool-call arguments: OutputStream (server/tool_calls.h) holds the text from the first
// tool call on; CallArgStreamer reads that held text as it grows and says what OpenAI streams:
// a first delta per call with its index, id and name (arguments ""), then the arguments' text in
// fragments as the model writes them.
//
// Formats it follows while streaming (others, and any call whose shape differs, are sent whole
// when the choice finishes, as before):
//   Hermes   <tool_call>{"name": "f", "arguments": {...}}</tool_call>, repeated;
//   Mistral  [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...] (an "id" after the arguments
//            skipped, as Nemo's template writes one) and [TOOL_CALLS]f[ARGS]{...}
//            (one [TOOL_CALLS] per call); a forced call list (tool_choice) starts at once;
//   Llama 3  {"name": "f", "parameters": {...}}; {...} (an optional <|python_tag|> first), from
//            the output's start;
//   DeepSeek <｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{...} (V3, R1) and
//            <｜tool▁call▁begin｜>f<｜tool▁sep｜>{...} (V3.1), inside the section of calls;
//   Kimi     <|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{...}.
// The arguments must be a JSON object (a string-valued "arguments" is not streamed). A call's
// fragments concatenate to the object's text as written (whitespace included): the whole-text
// parser (parse_output) gives the same object, re-serialised.
//
// At the end, reconcile() takes the whole-text parse: calls already announced keep their ids;
// calls the streamer did not follow go out whole, with the next indices. Ids come from
// server/tool_call_id.h in the format's shape, distinct within the choice.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/tool_call_id.h"
#include "server/tool_calls.h"

namespace nc::server {

class CallArgStreamer {
 public:
  // `ids`: the shape of the calls' ids (the output's format, which a forced call streams apart
  // from).
  CallArgStreamer(ToolFormat format, bool forced, CallIds ids);
  // `held`: all the held text so far (it only grows). The deltas new since the last call.
  std::vector<ToolCallDelta> update(std::string_view held);
  // The whole-text parse's calls at the end: the announced ones take their ids, the others get
  // new ones (distinct from the announced) and are returned whole (first deltas with the full
  // arguments).
  std::vector<ToolCallDelta> reconcile(std::vector<ToolCall>& calls) const;
  int announced() const { return int(ids_.size()); }
  // Where the call the held text ended inside of (its arguments' object never closed) starts:
  // its <tool_call> tag (Hermes) or its header. nullopt when no call is cut.
  std::optional<size_t> cut_call_start() const;

 private:
  enum class State { Open, Header, Args, Done };
  bool find_open(std::string_view held);
  // The next call's header (read_header), else Done once a header could no longer fit.
  bool match_header(std::string_view held, std::vector<ToolCallDelta>& out);
  bool read_header(std::string_view held, std::vector<ToolCallDelta>& out);
  std::optional<size_t> announced_as(const ToolCall& call, size_t k) const;
  void scan_args(std::string_view held, std::vector<ToolCallDelta>& out);
  bool json_continues(char c, bool& closed);
  // Whether `rest` starts with the call's end tag (true) or with the start of one (false: wait);
  // nullopt when neither.
  std::optional<bool> end_tag_at(std::string_view rest) const;
  bool close(char c, bool& closed);
  void string_ended();

  ToolFormat format_;
  CallIds id_shape_;
  State state_;
  size_t pos_ = 0;         // how far the held text has been read
  size_t call_start_ = 0;  // where the call being read starts
  // Args: the scan's string state, and what the JSON allows next outside strings
  // (json_continues).
  bool in_string_ = false;
  bool escape_ = false;
  enum class Expect { Value, ValueOrClose, Key, KeyOrClose, Colon, CommaOrClose };
  Expect expect_ = Expect::Value;
  std::vector<char> stack_;  // the open containers, '{' or '['
  bool in_number_ = false;
  std::string_view literal_;  // the rest of the true / false / null being read
  bool in_list_ = false;      // Mistral: inside a [...] call list
  std::vector<std::string> ids_;
  std::vector<size_t> starts_;  // per announced call, where it starts (call_start_)
};

}  // namespace nc::server
