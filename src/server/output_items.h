// A chat request's output as the item lists of the Responses and Messages APIs show it: a
// reasoning item (the <think> block), text, and one item per tool call, in the order the model
// wrote them (server/tool_calls.h reads the text: the same formats, held back and streamed the
// same way as the chat API's stream).
//
// Fed the request's Output events, it tells a Listener each change as it happens: an item
// opened, grew by a delta, closed. A stream writes its events from those calls; a whole answer
// is the same calls on the same events, so the two always agree.
//
// Rules:
// - Where the output is read (tools, or a reasoning block) text is trimmed as the chat API's
//   message is: blanks before it are dropped, blanks at its end held until more text comes
//   (dropped before a call and at the end), so "\n\n<tool_call>..." makes no text item of blanks.
//   Elsewhere text goes out as the model wrote it.
// - A text delta carries the log-probabilities of the tokens that arrived since the last one
//   (when asked); tokens that turn out to be reasoning or a call's (the closing </think> too) are
//   dropped, so a text item's log-probabilities are those of its own tokens. (Text after a
//   Hermes call is read only at the end: it carries the call's closing tokens, which the stream
//   cannot tell apart.)
// - An event's own pieces go out before what the end releases, in the order the model wrote
//   them; a call's fragment never opens an item (it extends the call its first piece opened).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/engine_loop.h"
#include "server/openai_format.h"
#include "server/tool_calls.h"

namespace nc::server {

struct OutputItem {
  enum class Kind : uint8_t { Reasoning, Text, Call };
  Kind kind = Kind::Text;
  int index = 0;                       // its place in the output
  std::string text;                    // reasoning or text; a call's arguments (JSON text)
  std::vector<LogprobToken> logprobs;  // Text, when asked
  std::string call_id, name;           // Call
  int call_index = -1;                 // Call: its index among the OutputStream's calls
  // Closed by the end of an output the token limit cut while it was being written: text or
  // reasoning, or a call whose arguments never closed (OpenAI marks it incomplete).
  bool cut = false;
};

// How far a request's output went: its token count and how it ended, from its Output events.
struct OutputProgress {
  int output_tokens = 0;
  FinishReason finish = FinishReason::None;
  std::string stop_string;  // the stop string that ended it (RequestOutput's)
  bool finished = false;
  bool aborted = false;
  void record(const StreamEvent& ev);
};

class OutputItems {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void opened(const OutputItem& item) = 0;
    // `delta` was appended to item.text; `logprobs` are its tokens' (Text, when asked).
    virtual void grew(const OutputItem& item, const std::string& delta,
                      const std::vector<LogprobToken>& logprobs) = 0;
    virtual void closed(const OutputItem& item) = 0;
  };

  OutputItems(const OutputFormat& format, bool want_logprobs, Listener& listener);
  OutputItems(const OutputItems&) = delete;  // it calls back its owner: never copied with it
  OutputItems& operator=(const OutputItems&) = delete;

  // An Output event; the finishing one (unless aborted) also flushes what was held back.
  void add(const StreamEvent& ev);
  // At the end: tokens still pending join the open text item, which closes; with no text and no
  // call (nothing, or reasoning alone) an empty text item is opened and closed too.
  void finish();

  // The item still open (an aborted answer lists it as it stands); null when none.
  const OutputItem* open_item() const { return open_ ? &*open_ : nullptr; }

 private:
  void open(OutputItem::Kind kind, std::string call_id = "", std::string name = "",
            int call_index = -1);
  void close();
  void add_reasoning(const std::string& text);
  void add_text(const std::string& text);
  void add_call(const ToolCallDelta& d);
  void add_delta(const OutputStream::Delta& d);

  Listener& listener_;
  bool want_logprobs_;
  bool trims_;  // text is trimmed (the rules above)
  OutputStream out_;
  std::optional<OutputItem> open_;
  int count_ = 0;
  bool has_text_ = false, has_call_ = false;
  bool length_ = false;                // the output ended at the token limit
  std::vector<LogprobToken> pending_;  // tokens whose text has not gone out yet
  std::string held_space_;             // blanks at the open text's end
};

}  // namespace nc::server
