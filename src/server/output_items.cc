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
  const bool in_call =
      open_ && open_->kind == OutputItem::Kind::Call && open_->call_index == d.index;
  if (!d.first && !in_call) return;  // cannot happen: add_delta keeps a call's pieces together
  if (d.first) open(OutputItem::Kind::Call, d.id, d.name, d.index);
  pending_.clear();  // the call's tokens
  held_space_.clear();
  if (d.arguments.empty()) return;
  open_->text += d.arguments;
  listener_.grew(*open_, d.arguments, {});
}

void OutputItems::add_delta(const OutputStream::Delta& d) {
  if (!d.reasoning.empty()) add_reasoning(d.reasoning);
  if (!d.content.empty()) add_text(d.content);
  for (const ToolCallDelta& c : d.calls) add_call(c);
}

void OutputItems::add(const StreamEvent& ev) {
  const RequestOutput& o = ev.output;
  if (want_logprobs_) pending_.insert(pending_.end(), ev.logprobs.begin(), ev.logprobs.end());
  const bool was_thinking = out_.in_think();
  const OutputStream::Delta d = out_.add(o.text_delta);
  add_delta(d);
  // The tokens that closed the reasoning block (</think>) and made no text are the block's.
  if (was_thinking && !out_.in_think() && d.content.empty() && d.calls.empty()) pending_.clear();
  if (o.finished && o.finish_reason != FinishReason::Abort) {
    length_ = o.finish_reason == FinishReason::Length;
    add_delta(out_.finish());
  }
}

void OutputItems::finish() {
  if (open_ && open_->kind == OutputItem::Kind::Text)  // tokens whose text went out before
    open_->logprobs.insert(open_->logprobs.end(), pending_.begin(), pending_.end());
  pending_.clear();
  if (open_ && length_) open_->cut = open_->kind != OutputItem::Kind::Call || out_.call_cut();
  close();
  if (!has_text_ && !has_call_) {  // the message the limit left unwritten is cut too
    open(OutputItem::Kind::Text);
    open_->cut = length_;
    close();
  }
}

}  // namespace nc::server
