#!/usr/bin/env python3
"""POST /v1/responses through the official `openai` client (`client.responses`) against
`nanocascade serve` (SmolLM2 on the CPU).

Each answer is compared with the chat completions API's answer to the same conversation: the
Responses request is read as that chat request (server/responses_request.h), so under greedy
decoding the texts, token counts and tool calls must be the same. Tool calls are few-shot, as in
test_tool_calls.py. Run as test_openai_client.py is:

    python3 tests/server/test_responses_api.py
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import MODEL_ID, ServerTestCase, run_suite  # noqa: E402
from test_tool_calls import CALL, QUESTION, TOOLS, few_shot  # noqa: E402

PROMPT = "What is the capital of France?"


class ResponsesTest(ServerTestCase):
    def chat(self, messages, **kw):
        return self.client.chat.completions.create(
            model=MODEL_ID, messages=messages, temperature=0, **kw)

    def respond(self, **kw):
        kw.setdefault("model", MODEL_ID)
        kw.setdefault("temperature", 0)
        return self.client.responses.create(**kw)

    def test_text_equals_chat(self):
        ref = self.chat([{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": PROMPT}], max_tokens=24)
        r = self.respond(instructions="Answer briefly.", input=PROMPT, max_output_tokens=24)
        self.assertEqual(r.object, "response")
        self.assertTrue(r.id.startswith("resp_"))
        self.assertEqual(r.output_text, ref.choices[0].message.content)
        self.assertEqual(r.usage.input_tokens, ref.usage.prompt_tokens)
        self.assertEqual(r.usage.output_tokens, ref.usage.completion_tokens)
        self.assertEqual(r.status,
                         "incomplete" if ref.choices[0].finish_reason == "length" else "completed")

    def test_stream_equals_whole(self):
        whole = self.respond(input=PROMPT, max_output_tokens=24)
        deltas, types, final = [], [], None
        for ev in self.respond(input=PROMPT, max_output_tokens=24, stream=True):
            types.append(ev.type)
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
            if ev.type in ("response.completed", "response.incomplete"):
                final = ev.response
        self.assertEqual(types[:2], ["response.created", "response.in_progress"])
        self.assertIn(types[-1], ("response.completed", "response.incomplete"))
        self.assertEqual("".join(deltas), whole.output_text)
        self.assertEqual(final.output_text, whole.output_text)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)

    def test_input_items_equal_chat_messages(self):
        msgs = [{"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": PROMPT}]
        ref = self.chat(msgs, max_tokens=16)
        items = [{"role": "user", "content": [{"type": "input_text", "text": "Hi!"}]},
                 {"type": "message", "role": "assistant",
                  "content": [{"type": "output_text", "text": "Hello! How can I help?"}]},
                 {"role": "user", "content": PROMPT}]
        r = self.respond(input=items, max_output_tokens=16)
        self.assertEqual(r.output_text, ref.choices[0].message.content)
        self.assertEqual(r.usage.input_tokens, ref.usage.prompt_tokens)

    def test_function_call_round_trip(self):
        tools = [{"type": "function", **TOOLS[0]["function"]}]
        r = self.respond(input=few_shot(CALL), tools=tools, max_output_tokens=40)
        calls = [o for o in r.output if o.type == "function_call"]
        self.assertEqual(len(calls), 1, r.output)
        self.assertEqual(calls[0].name, "get_weather")
        self.assertEqual(json.loads(calls[0].arguments), {"city": "Paris"})
        ref = self.chat(few_shot(CALL), tools=TOOLS, max_tokens=40).choices[0].message.tool_calls
        # The same call; its text is the streamed fragments joined (whole and streamed answers
        # agree), where the chat API's whole answer re-serializes it.
        self.assertEqual(json.loads(calls[0].arguments), json.loads(ref[0].function.arguments))
        # The call and its output sent back as items equal the chat API's tool turns.
        back = few_shot(CALL) + [
            {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
             "arguments": calls[0].arguments},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22 C"}]
        a = self.respond(input=back, tools=tools, max_output_tokens=8)
        history = few_shot(CALL) + [
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": calls[0].call_id, "type": "function",
                             "function": {"name": "get_weather",
                                          "arguments": calls[0].arguments}}]},
            {"role": "tool", "tool_call_id": calls[0].call_id, "content": "22 C"}]
        b = self.chat(history, tools=TOOLS, max_tokens=8)
        self.assertEqual(a.usage.input_tokens, b.usage.prompt_tokens)
        self.assertGreater(a.usage.input_tokens, r.usage.input_tokens)

    def test_streamed_call(self):
        tools = [{"type": "function", **TOOLS[0]["function"]}]
        args, done = "", None
        for ev in self.respond(input=few_shot(CALL), tools=tools, max_output_tokens=40,
                               stream=True):
            if ev.type == "response.function_call_arguments.delta":
                args += ev.delta
            if ev.type == "response.output_item.done" and ev.item.type == "function_call":
                done = ev.item
        self.assertIsNotNone(done)
        self.assertEqual(done.name, "get_weather")
        self.assertEqual(args, done.arguments)
        self.assertEqual(json.loads(args), {"city": "Paris"})

    def test_json_schema_format(self):
        schema = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"], "additionalProperties": False}
        r = self.respond(input=QUESTION, max_output_tokens=40,
                         text={"format": {"type": "json_schema", "name": "place",
                                          "schema": schema, "strict": True}})
        self.assertIsInstance(json.loads(r.output_text)["city"], str)

    def test_previous_response_continues_and_store_answers(self):
        first = self.respond(input="Hi!", max_output_tokens=12)
        second = self.respond(input=PROMPT, previous_response_id=first.id, max_output_tokens=16)
        ref = self.chat([{"role": "user", "content": "Hi!"},
                         {"role": "assistant", "content": first.output_text},
                         {"role": "user", "content": PROMPT}], max_tokens=16)
        self.assertEqual(second.output_text, ref.choices[0].message.content)
        self.assertEqual(second.usage.input_tokens, ref.usage.prompt_tokens)
        self.assertEqual(self.client.responses.retrieve(first.id).output_text, first.output_text)
        self.client.responses.delete(first.id)
        with self.assertRaises(self.openai.NotFoundError):
            self.client.responses.retrieve(first.id)
        with self.assertRaises(self.openai.BadRequestError) as e:
            self.respond(input=PROMPT, previous_response_id=first.id)
        self.assertEqual(e.exception.code, "previous_response_not_found")

    def test_errors(self):
        o = self.openai
        with self.assertRaises(o.BadRequestError) as e:
            self.respond(input=PROMPT, conversation="conv_0")
        self.assertEqual(e.exception.param, "conversation")
        with self.assertRaises(o.BadRequestError) as e:
            self.respond(input=PROMPT, max_output_tokens=10 ** 7)
        self.assertEqual(e.exception.param, "max_output_tokens")
        with self.assertRaises(o.BadRequestError) as e:
            self.respond(input=PROMPT, tools=[{"type": "web_search"}])
        self.assertEqual(e.exception.param, "tools[0].type")
        with self.assertRaises(o.NotFoundError):
            self.respond(input=PROMPT, model="gpt-4.1")


if __name__ == "__main__":
    run_suite()
