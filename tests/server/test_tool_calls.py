#!/usr/bin/env python3
"""Tool calls and reasoning through the official `openai` client against `nanocascade serve`
(SmolLM2 on the CPU, its own chat template).

A 135M model does not call tools by itself, so the conversations are few-shot: earlier assistant
turns whose content is the exact call text (or a <think> block), which SmolLM2 copies under
greedy decoding. SmolLM2's template shows no tool format, so the server reads Hermes/Qwen
`<tool_call>` calls (its fallback, server/tool_calls.h). The parser itself is tested on fixed outputs in
tests/test_tool_calls.cc. Run as test_openai_client.py is:

    python3 tests/server/test_tool_calls.py
"""
import json
import os
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import MODEL_ID, ServerTestCase, run_suite  # noqa: E402

TOOLS = [{"type": "function",
          "function": {"name": "get_weather", "description": "The weather in a city.",
                       "parameters": {"type": "object",
                                      "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}}]
QUESTION = "What is the weather in Paris?"
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


def few_shot(answer, question=QUESTION, shots=4):
    msgs = []
    for _ in range(shots):
        msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return msgs + [{"role": "user", "content": question}]


class ToolCallTest(ServerTestCase):
    def chat(self, **kw):
        kw.setdefault("model", MODEL_ID)
        kw.setdefault("temperature", 0)
        kw.setdefault("max_tokens", 40)
        return self.client.chat.completions.create(**kw)

    def assert_weather_call(self, call):
        self.assertEqual(call.type, "function")
        self.assertTrue(call.id.startswith("call_"), call.id)
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})

    def test_round_trip(self):
        msgs = few_shot(CALL)
        r = self.chat(messages=msgs, tools=TOOLS)
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertIsNone(choice.message.content)
        self.assertEqual(len(choice.message.tool_calls), 1)
        call = choice.message.tool_calls[0]
        self.assert_weather_call(call)
        # Feed the call and its result back (arguments as the JSON string OpenAI sends).
        def answer(result):
            history = msgs + [
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": call.id, "type": "function",
                                 "function": {"name": call.function.name,
                                              "arguments": call.function.arguments}}]},
                {"role": "tool", "tool_call_id": call.id, "content": result}]
            return self.chat(messages=history, tools=TOOLS, max_tokens=8)
        short, long = answer("22 C"), answer("22 C " + "and sunny " * 20)
        for a in (short, long):
            self.assertIn(a.choices[0].finish_reason, ("stop", "length", "tool_calls"))
            self.assertEqual(a.choices[0].message.role, "assistant")
        # The tool's result reached the prompt: 20 more words, about 40 more tokens.
        self.assertGreater(short.usage.prompt_tokens, r.usage.prompt_tokens)
        self.assertGreaterEqual(long.usage.prompt_tokens - short.usage.prompt_tokens, 20)

    def test_streamed_call_matches_whole_and_round_trips(self):
        whole = self.chat(messages=few_shot(CALL), tools=TOOLS).choices[0].message.tool_calls
        calls, content, reasons, asked = {}, "", [], None
        for chunk in self.chat(messages=few_shot(CALL), tools=TOOLS, stream=True,
                               stream_options={"include_usage": True}):
            asked = chunk.usage or asked
            for c in chunk.choices:
                content += c.delta.content or ""
                if c.finish_reason:
                    reasons.append(c.finish_reason)
                for d in c.delta.tool_calls or []:
                    # The first delta of a call names it; later ones (none here) add arguments.
                    if d.index not in calls:
                        self.assertTrue(d.id.startswith("call_"))
                        self.assertEqual(d.type, "function")
                        calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                    calls[d.index]["arguments"] += d.function.arguments or ""
        self.assertEqual(reasons, ["tool_calls"])
        self.assertEqual(content.strip(), "")
        self.assertEqual(list(calls), [0])
        self.assertEqual(calls[0]["name"], whole[0].function.name)
        self.assertEqual(json.loads(calls[0]["arguments"]), json.loads(whole[0].function.arguments))
        self.assertNotEqual(calls[0]["id"], whole[0].id)
        # The streamed call and its result go back; the answer streams too.
        call = calls[0]
        history = few_shot(CALL) + [
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": call["id"], "type": "function",
                             "function": {"name": call["name"],
                                          "arguments": call["arguments"]}}]},
            {"role": "tool", "tool_call_id": call["id"], "content": "22 C"}]
        reasons, usage = [], None
        for chunk in self.chat(messages=history, tools=TOOLS, max_tokens=8, stream=True,
                               stream_options={"include_usage": True}):
            usage = chunk.usage or usage
            reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
        self.assertEqual(len(reasons), 1)
        self.assertIn(reasons[0], ("stop", "length", "tool_calls"))
        # The result reached the prompt (SmolLM2's template writes a turn's content, not its calls).
        self.assertGreater(usage.prompt_tokens, asked.prompt_tokens + 5)

    def test_parallel_calls(self):
        two = CALL + "\n" + CALL.replace("Paris", "Rome")
        msg = self.chat(messages=few_shot(two), tools=TOOLS, max_tokens=60).choices[0].message
        self.assertEqual([c.function.name for c in msg.tool_calls], ["get_weather"] * 2)
        self.assertEqual([json.loads(c.function.arguments)["city"] for c in msg.tool_calls],
                         ["Paris", "Rome"])
        self.assertNotEqual(msg.tool_calls[0].id, msg.tool_calls[1].id)

    def forced_calls(self, stream, **kw):
        """tool_choice "required" after few-shot turns that make two calls (in the grammar's
        own layout): the calls as (name, arguments) and the finish reasons."""
        call = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n'
                '</tool_call>')
        two = call % "Paris" + "\n" + call % "Rome"
        r = self.chat(messages=few_shot(two), tools=TOOLS, tool_choice="required",
                      max_tokens=80, stream=stream, **kw)
        if not stream:
            c = r.choices[0]
            return ([(t.function.name, json.loads(t.function.arguments))
                     for t in c.message.tool_calls], [c.finish_reason])
        calls, reasons = {}, []
        for chunk in r:
            for c in chunk.choices:
                reasons += [c.finish_reason] if c.finish_reason else []
                for d in c.delta.tool_calls or []:
                    if d.index not in calls:
                        self.assertTrue(d.id.startswith("call_"))
                        calls[d.index] = [d.function.name, ""]
                    calls[d.index][1] += d.function.arguments or ""
        self.assertEqual(list(calls), list(range(len(calls))))
        return [(n, json.loads(a)) for n, a in calls.values()], reasons

    def test_forced_parallel_calls(self):
        # parallel_tool_calls (true by default, as OpenAI's): the grammar lets the model go on
        # after a call, and it copies the second one.
        for stream in (False, True):
            calls, reasons = self.forced_calls(stream)
            self.assertEqual(reasons, ["tool_calls"])
            self.assertEqual(calls, [("get_weather", {"city": "Paris"}),
                                     ("get_weather", {"city": "Rome"})], f"stream={stream}")
            calls, reasons = self.forced_calls(stream, parallel_tool_calls=True)
            self.assertEqual(len(calls), 2)
            # parallel_tool_calls false: the grammar ends the output after the first call.
            calls, reasons = self.forced_calls(stream, parallel_tool_calls=False)
            self.assertEqual(reasons, ["tool_calls"])
            self.assertEqual(calls, [("get_weather", {"city": "Paris"})], f"stream={stream}")

    def test_tool_choice_none_and_no_tools_parse_nothing(self):
        for kw in (dict(tools=TOOLS, tool_choice="none"), {}):
            r = self.chat(messages=few_shot(CALL), **kw).choices[0]
            self.assertIsNone(r.message.tool_calls)
            self.assertNotEqual(r.finish_reason, "tool_calls")
            self.assertIn("<tool_call>", r.message.content)

    def test_reasoning_content(self):
        shot = "<think>Paris is in France.</think>It is sunny."
        r = self.chat(messages=few_shot(shot)).choices[0].message
        self.assertEqual(r.model_extra.get("reasoning_content"), "Paris is in France.")
        self.assertEqual(r.content, "It is sunny.")
        reasoning, content = "", ""
        for chunk in self.chat(messages=few_shot(shot), stream=True):
            for c in chunk.choices:
                reasoning += (c.delta.model_extra or {}).get("reasoning_content") or ""
                content += c.delta.content or ""
        self.assertEqual(reasoning, "Paris is in France.")
        self.assertEqual(content, "It is sunny.")

    def test_bad_input_gets_400_and_the_server_stays_healthy(self):
        user = [{"role": "user", "content": "hi"}]
        call = {"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        bad = [
            (dict(messages=user, tools=TOOLS,
                  tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
            (dict(messages=user, tool_choice="required"), "tool_choice"),
            (dict(messages=user, tools=[{"type": "function", "function": {}}]),
             "tools[0].function.name"),
            (dict(messages=user, tools=[{"type": "retrieval"}]), "tools[0].type"),
            (dict(messages=user + [{"role": "tool", "content": "x"}]),
             "messages[1].tool_call_id"),
            (dict(messages=user + [{"role": "assistant", "tool_calls": [
                dict(call, function={"arguments": "{}"})]}]),
             "messages[1].tool_calls[0].function.name"),
            (dict(messages=[{"role": "user", "content": "hi", "tool_calls": [call]}]),
             "messages[0].tool_calls"),
            (dict(messages=user + [{"role": "assistant", "tool_calls": [
                {k: v for k, v in call.items() if k != "id"}]}]),
             "messages[1].tool_calls[0].id"),
        ]
        for kw, param in bad:
            with self.assertRaises(self.openai.BadRequestError, msg=param) as e:
                self.chat(**kw)
            self.assertEqual(e.exception.status_code, 400)
            self.assertEqual(e.exception.param, param)
            self.assertEqual(e.exception.body["type"], "invalid_request_error")
        with urllib.request.urlopen(self.root + "/health", timeout=10) as h:
            self.assertEqual(h.status, 200)
        self.assertEqual(self.chat(messages=user, max_tokens=2).choices[0].finish_reason, "length")
        # Arguments that are no JSON object (a model may write them; the server answers them as
        # written) come back as a string: the server takes its own answer back.
        not_json = user + [{"role": "assistant", "tool_calls": [
            dict(call, function={"name": "get_weather", "arguments": "{not json"})]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
        self.assertEqual(self.chat(messages=not_json, max_tokens=2).choices[0].finish_reason,
                         "length")


if __name__ == "__main__":
    run_suite()
