#include "server/output_items.h"

#include <utility>

namespace nc::server {

OutputItems::OutputItems(const OutputFormat& format, bool want_logprobs, Listener& listener)
    : listener_(listener),
      want_logprobs_(want_logprobs),
      trims_(format.tools != ToolFormat::None || format.starts_in_think),
      out_(format) {}

void OutputProgress::record(const StreamEvent& ev) {
  const RequestOutput& o = ev.output;
  if (!o.finished) return;
  finished = true;
  finish = o.finish_reason;
  stop_string = o.stop_string;
  aborted = o.finish_reason == FinishReason::Abort;
  output_tokens = o.num_completion_tokens;
}

void OutputItems::open(OutputItem::Kind kind, std::string call_id, std::string name,
                       int call_index) {
  close();
  open_ = OutputItem{kind, count_++, "", {}, std::move(call_id), std::move(name), call_index};
  has_text_ = has_text_ || kind == OutputItem::Kind::Text;
  has_call_ = has_call_ || kind == OutputItem::Kind::Call;
  listener_.opened(*open_);
}

void OutputItems::close() {
  if (!open_) return;
  listener_.closed(*open_);
  open_.reset();
}

void OutputItems::add_reasoning(const std::string& text) {
  if (!open_ || open_->kind != OutputItem::Kind::Reasoning) open(OutputItem::Kind::Reasoning);
  open_->text += text;
  pending_.clear();  // the reasoning's tokens
  held_space_.clear();
  trims_ = true;  // the chat API trims the answer after a reasoning block
  listener_.grew(*open_, text, {});
}

void OutputItems::add_text(const std::string& text) {
  constexpr const char* kSpace = " \t\n\r\f\v";
  const bool in_text = open_ && open_->kind == OutputItem::Kind::Text;
  std::string body = text, tail;
  if (trims_) {
    const size_t last = text.find_last_not_of(kSpace);
    if (last == std::string::npos) {
      if (in_text) held_space_ += text;
      return;
    }
    body = text.substr(0, last + 1);
    tail = text.substr(last + 1);
  }
  if (!in_text) {
    open(OutputItem::Kind::Text);
    held_space_.clear();
    if (trims_) body.erase(0, body.find_first_not_of(kSpace));
  }
  const std::string delta = held_space_ + body;
  held_space_ = tail;
  open_->text += delta;
  open_->logprobs.insert(open_->logprobs.end(), pending_.begin(), pending_.end());
  const std::vector<LogprobToken> logprobs = std::move(pending_);
  pending_.clear();
  listener_.grew(*open_, delta, logprobs);
}

void OutputItems::add_call(const ToolCallDelta& d) {
  if (d.first || !open_ || open_->kind != OutputItem::Kind::Call || open_->call_index != d.index)
    open(OutputItem::Kind::Call, d.id, d.name, d.index);
  pending_.clear();  // the call's tokens
  held_space_.clear();
  if (d.arguments.empty()) return;
  open_->text += d.arguments;
  listener_.grew(*open_, d.arguments, {});
}

void OutputItems::add(const StreamEvent& ev) {
  const RequestOutput& o = ev.output;
  OutputStream::Delta d = out_.add(o.text_delta);
  if (o.finished && o.finish_reason != FinishReason::Abort) {
    OutputStream::Delta rest = out_.finish();
    d.reasoning += rest.reasoning;
    d.content += rest.content;
    d.calls.insert(d.calls.end(), rest.calls.begin(), rest.calls.end());
  }
  if (want_logprobs_) pending_.insert(pending_.end(), ev.logprobs.begin(), ev.logprobs.end());
  if (!d.reasoning.empty()) add_reasoning(d.reasoning);
  if (!d.content.empty()) add_text(d.content);
  for (const ToolCallDelta& c : d.calls) add_call(c);
}

void OutputItems::finish() {
  if (open_ && open_->kind == OutputItem::Kind::Text)  // tokens whose text went out before
    open_->logprobs.insert(open_->logprobs.end(), pending_.begin(), pending_.end());
  pending_.clear();
  close();
  if (!has_text_ && !has_call_) {
    open(OutputItem::Kind::Text);
    close();
  }
}

}  // namespace nc::server
