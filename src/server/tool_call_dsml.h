// DeepSeek-V3.2's and V4's tool calls (ToolFormat::Dsml, server/tool_calls.h): a block of
// invocations in DeepSeek's markup language,
//
//   <｜DSML｜function_calls>                              (V4: <｜DSML｜tool_calls>)
//   <｜DSML｜invoke name="get_weather">
//   <｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>
//   <｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>
//   </｜DSML｜invoke>
//   </｜DSML｜function_calls>
//
// Told from the template, which writes "｜DSML｜" for earlier calls. A parameter says its own type:
// string="true" is the text as written; any other is JSON (nested at most kMaxJsonDepth:
// server/json_fields.h), or the text where it does not parse. Text before and after a block is
// content; a block in which no invocation names its function stays in the content as written.
// A call the end cut short (max_tokens) keeps the arguments read so far. The markup may hold
// special tokens: the server keeps them in the text for this format (engine_loop.cc). Calls go
// out whole at the end of a stream; a forced call is Hermes' tag (the grammar's), read by
// tool_calls.cc.
#pragma once
#include <string_view>

#include "server/tool_calls.h"

namespace nc::server {

// What every block of calls starts with: the stream holds the text from it on.
inline constexpr std::string_view kDsmlPrefix = "<｜DSML｜";

bool is_dsml_template(std::string_view template_text);

// Reads the calls of `text` (after any reasoning block) into out.calls and the rest into
// out.content (untrimmed: parse_output trims it).
void parse_dsml_calls(std::string_view text, ParsedOutput& out);

}  // namespace nc::server
