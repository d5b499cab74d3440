#!/usr/bin/env python3
"""POST /v1/messages through the official `anthropic` client against `nanocascade serve`
(SmolLM2 on the CPU).

Each answer is compared with the chat completions API's answer to the same conversation: the
Messages request is read as that chat request (server/anthropic_request.h), so under greedy
decoding the texts, token counts and tool calls must be the same. Tool calls are few-shot, as in
test_tool_calls.py. Run as test_openai_client.py is:

    python3 tests/server/test_anthropic_api.py
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import API_KEY, MODEL_ID, ServerTestCase, run_suite  # noqa: E402
from test_tool_calls import CALL, TOOLS, few_shot  # noqa: E402

PROMPT = "What is the capital of France?"
ANTHROPIC_TOOLS = [{"name": t["function"]["name"], "description": t["function"]["description"],
                    "input_schema": t["function"]["parameters"]} for t in TOOLS]


class AnthropicTest(ServerTestCase):
    SERVER_ARGS = ("--api-key", API_KEY)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import anthropic
        cls.anthropic = anthropic
        cls.openai_client = cls.openai.OpenAI(base_url=cls.server.url(), api_key=API_KEY,
                                              max_retries=0)
        # The SDK sends the key as x-api-key and appends /v1/messages to the root.
        cls.claude = anthropic.Anthropic(base_url=cls.root, api_key=API_KEY, max_retries=0)

    def chat(self, messages, **kw):
        return self.openai_client.chat.completions.create(
            model=MODEL_ID, messages=messages, temperature=0, **kw)

    # The SDK (2.x) has no sampling arguments; temperature goes in the body as any field.
    GREEDY = {"extra_body": {"temperature": 0}}

    def create(self, **kw):
        kw.setdefault("model", MODEL_ID)
        return self.claude.messages.create(**kw, **self.GREEDY)

    def test_text_equals_chat(self):
        ref = self.chat([{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": PROMPT}], max_tokens=24)
        m = self.create(system="Answer briefly.", max_tokens=24,
                        messages=[{"role": "user", "content": PROMPT}])
        self.assertEqual(m.type, "message")
        self.assertEqual(m.content[0].type, "text")
        self.assertEqual(m.content[0].text, ref.choices[0].message.content)
        self.assertEqual(m.usage.input_tokens, ref.usage.prompt_tokens)
        self.assertEqual(m.usage.output_tokens, ref.usage.completion_tokens)
        self.assertEqual(m.stop_reason,
                         "max_tokens" if ref.choices[0].finish_reason == "length" else "end_turn")
        n = self.claude.messages.count_tokens(
            model=MODEL_ID, system="Answer briefly.",
            messages=[{"role": "user", "content": PROMPT}])
        self.assertEqual(n.input_tokens, m.usage.input_tokens)

    def test_stream_equals_whole(self):
        kw = dict(max_tokens=24, messages=[{"role": "user", "content": PROMPT}])
        whole = self.create(**kw)
        with self.claude.messages.stream(model=MODEL_ID, **kw, **self.GREEDY) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertEqual(text, whole.content[0].text)
        self.assertEqual(final.content[0].text, whole.content[0].text)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)
        self.assertEqual(final.stop_reason, whole.stop_reason)

    def test_tool_use_round_trip(self):
        msgs = few_shot(CALL)
        m = self.create(max_tokens=40, messages=msgs, tools=ANTHROPIC_TOOLS)
        self.assertEqual(m.stop_reason, "tool_use")
        uses = [b for b in m.content if b.type == "tool_use"]
        self.assertEqual(len(uses), 1, m.content)
        self.assertEqual(uses[0].name, "get_weather")
        self.assertEqual(uses[0].input, {"city": "Paris"})
        ref = self.chat(msgs, tools=TOOLS, max_tokens=40).choices[0].message.tool_calls
        self.assertEqual(json.loads(ref[0].function.arguments), uses[0].input)
        # The tool_use and its tool_result sent back equal the chat API's tool turns.
        back = msgs + [{"role": "assistant", "content": [b.model_dump() for b in m.content]},
                       {"role": "user", "content": [{"type": "tool_result",
                                                     "tool_use_id": uses[0].id,
                                                     "content": "22 C"}]}]
        a = self.create(max_tokens=8, messages=back, tools=ANTHROPIC_TOOLS)
        history = msgs + [
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": uses[0].id, "type": "function",
                             "function": {"name": "get_weather",
                                          "arguments": json.dumps(uses[0].input)}}]},
            {"role": "tool", "tool_call_id": uses[0].id, "content": "22 C"}]
        b = self.chat(history, tools=TOOLS, max_tokens=8)
        self.assertEqual(a.usage.input_tokens, b.usage.prompt_tokens)

    def test_streamed_tool_use(self):
        with self.claude.messages.stream(model=MODEL_ID, max_tokens=40, messages=few_shot(CALL),
                                         tools=ANTHROPIC_TOOLS, **self.GREEDY) as s:
            final = s.get_final_message()
        uses = [b for b in final.content if b.type == "tool_use"]
        self.assertEqual(len(uses), 1, final.content)
        self.assertEqual(uses[0].input, {"city": "Paris"})
        self.assertEqual(final.stop_reason, "tool_use")

    def test_json_schema_output(self):
        schema = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"], "additionalProperties": False}
        m = self.create(max_tokens=40, messages=[{"role": "user", "content": PROMPT}],
                        output_config={"format": {"type": "json_schema", "schema": schema}})
        self.assertIsInstance(json.loads(m.content[0].text)["city"], str)

    def test_prefill_is_continued(self):
        # A last assistant turn is continued (chat's continue_final_message): the answer is the
        # text after it, the same as the completions API gives for the prompt /tokenize renders.
        prefill = "The capital of France is"
        convo = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": prefill}]
        m = self.create(max_tokens=8, messages=convo)
        ref = self.chat(convo, max_tokens=8, extra_body={"continue_final_message": True})
        self.assertEqual(m.content[0].text, ref.choices[0].message.content)
        self.assertEqual(m.usage.input_tokens, ref.usage.prompt_tokens)
        import urllib.request
        req = urllib.request.Request(
            self.root + "/tokenize", headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " + API_KEY},
            data=json.dumps({"messages": convo, "continue_final_message": True}).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            tokens = json.loads(r.read())["tokens"]
        self.assertEqual(len(tokens), ref.usage.prompt_tokens)
        done = self.openai_client.completions.create(model=MODEL_ID, prompt=tokens, max_tokens=8,
                                                     temperature=0)
        self.assertEqual(done.choices[0].text, m.content[0].text)
        self.assertEqual(self.claude.messages.count_tokens(model=MODEL_ID,
                                                           messages=convo).input_tokens,
                         len(tokens))
        # Closed instead, the prompt is longer (the turn's end and a new generation prompt).
        closed = self.chat(convo, max_tokens=1)
        self.assertGreater(closed.usage.prompt_tokens, len(tokens))
        # A prefill with no text to continue is a 400.
        with self.assertRaises(self.anthropic.BadRequestError):
            self.create(max_tokens=5, messages=[
                {"role": "user", "content": PROMPT},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                                                   "name": "get_weather", "input": {}}]}])

    def test_errors(self):
        a = self.anthropic
        with self.assertRaises(a.BadRequestError) as e:  # a server tool
            self.create(max_tokens=5, messages=[{"role": "user", "content": PROMPT}],
                        tools=[{"type": "web_search_20250305", "name": "web_search"}])
        self.assertEqual(e.exception.body["error"]["type"], "invalid_request_error")
        # An image is read as a placeholder, not refused (agents resend their history).
        m = self.create(max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}},
            {"type": "text", "text": PROMPT}]}])
        self.assertEqual(m.type, "message")
        with self.assertRaises(a.NotFoundError):
            self.create(model="claude-sonnet-4-5", max_tokens=5,
                        messages=[{"role": "user", "content": PROMPT}])
        bad = a.Anthropic(base_url=self.root, api_key="wrong", max_retries=0)
        with self.assertRaises(a.AuthenticationError):
            bad.messages.create(model=MODEL_ID, max_tokens=5,
                                messages=[{"role": "user", "content": PROMPT}])


if __name__ == "__main__":
    run_suite()
