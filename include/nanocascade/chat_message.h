// nanocascade's public chat type: one message of a conversation, as the OpenAI chat API and the
// chat templates (src/tokenizer/chat_template.h) see it. A plain value with no invariants of its
// own: the chat template that renders a conversation checks the roles (and names a bad one).
#pragma once
#include <string>

namespace nc {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

}  // namespace nc
