// Tool-call ids: the one place they are made, per output format, and where a client's ids are
// fitted to what the chat template accepts.
//
// Shapes: Mistral's templates (Nemo, Small 3.x, Devstral) raise unless an id is exactly 9
// characters (Mistral's tokenizer makes them from [A-Za-z0-9]), so Mistral calls get 9 random
// alphanumerics; Kimi-K2's are "functions.NAME:K", K counting the conversation's calls from 0 as
// its templates number them (the older template writes the id a tool result names, so the model
// reads the ids it was trained on; K goes on from the calls in the request's history); every
// other format gets OpenAI's shape, "call_" and 24 random hex digits. Both
// the whole-text parser (parse_output) and the streamer (CallArgStreamer) draw ids here, so a
// streamed call and a returned one look the same. An id is never the model's own (a Mistral
// model may write "id" or [CALL_ID] itself, copying an earlier turn's): a call's id must be
// unique in the conversation, which the model does not ensure. `taken` lists the ids already
// given in the same response: a new one differs from all of them (a random clash is redrawn),
// so parallel calls always have distinct ids. Across responses ids are random: 62^9 (about
// 1.4e16) Mistral ids, 16^24 others.
//
// Ids coming back (an assistant turn's tool_calls[k].id, a tool turn's tool_call_id) are taken
// as the client sends them. For a Mistral template an id that is not 9 alphanumerics (a
// conversation begun with another server or model: "call_..." ids) is mapped to 9 alphanumerics
// by a hash of the whole id: the same id always gives the same result, so a call and the tool
// result that names it still match, and a conversation renders the same way each turn (its
// prefix stays cached). Ids that already fit, and every id for other formats, are unchanged.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "server/tool_calls.h"

namespace nc::server {

// A new id in the format's shape, not equal to any of `taken`.
std::string new_tool_call_id(ToolFormat format, const std::vector<std::string>& taken = {});

// The ids of one output's calls: the format's shape; for Kimi, the number of calls in the
// conversation before this output (CallIds::first_index).
struct CallIds {
  ToolFormat format = ToolFormat::None;
  int first_index = 0;
};

// The id of a call named `name`, after the output's `taken` ones (Kimi: "functions.NAME:K" with
// K = first_index + taken.size(); other formats as above).
std::string new_tool_call_id(const CallIds& ids, std::string_view name,
                             const std::vector<std::string>& taken);

// Whether `id` has the shape the format's templates accept (Mistral: 9 alphanumerics; any string
// for the others).
bool tool_call_id_fits(ToolFormat format, std::string_view id);

// A client's id as the format's template accepts it: unchanged when it fits, else (Mistral) 9
// alphanumerics derived from the whole id.
std::string fit_tool_call_id(ToolFormat format, std::string_view id);

}  // namespace nc::server
