#!/usr/bin/env python3
"""Tool calls through the official `openai` client with another family's chat template:
`nanocascade serve --chat-template FILE` on SmolLM2 (CPU) with Llama 3.1's template, whose
tool format (a JSON object {"name", "parameters"}) the server reads from the template. A 135M
model does not call tools by itself, so the call is forced (tool_choice naming the function:
the grammar holds the output to that format); then the call and the tool's result go back
through the template and the model answers.

    python3 tests/server/test_tool_call_templates.py
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import MODEL_ID, ServerTestCase, run_suite  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(ROOT, "third_party", "llama-jinja", "templates")
TOOLS = [{"type": "function",
          "function": {"name": "get_weather", "description": "The weather in a city.",
                       "parameters": {"type": "object",
                                      "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}}]
FORCED = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@unittest.skipUnless(os.path.isdir(TEMPLATES), "no templates: run tools/setup.sh")
class Llama31TemplateToolCallTest(ServerTestCase):
    SERVER_ARGS = ("--chat-template",
                   os.path.join(TEMPLATES, "meta-llama-Llama-3.1-8B-Instruct.jinja"))

    def chat(self, **kw):
        kw.setdefault("model", MODEL_ID)
        kw.setdefault("temperature", 0)
        kw.setdefault("max_tokens", 60)
        return self.client.chat.completions.create(**kw)

    def test_forced_call_round_trip(self):
        r = self.chat(messages=QUESTION, tools=TOOLS, tool_choice=FORCED,
                      parallel_tool_calls=False)
        c = r.choices[0]
        self.assertEqual(c.finish_reason, "tool_calls")
        self.assertEqual(len(c.message.tool_calls), 1)
        call = c.message.tool_calls[0]
        self.assertEqual(call.function.name, "get_weather")
        self.assertIsInstance(json.loads(call.function.arguments)["city"], str)
        history = QUESTION + [
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": call.id, "type": "function",
                             "function": {"name": "get_weather",
                                          "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "22 C and sunny"}]
        a = self.chat(messages=history, tools=TOOLS, max_tokens=8)
        self.assertIn(a.choices[0].finish_reason, ("stop", "length", "tool_calls"))
        # The call and the tool's result reached the prompt through Llama 3.1's template.
        self.assertGreater(a.usage.prompt_tokens, r.usage.prompt_tokens + 10)

    def test_streamed_forced_call_matches_whole(self):
        whole = self.chat(messages=QUESTION, tools=TOOLS, tool_choice=FORCED,
                          parallel_tool_calls=False).choices[0].message.tool_calls
        calls, reasons = {}, []
        for chunk in self.chat(messages=QUESTION, tools=TOOLS, tool_choice=FORCED,
                               parallel_tool_calls=False, stream=True):
            for c in chunk.choices:
                reasons += [c.finish_reason] if c.finish_reason else []
                for d in c.delta.tool_calls or []:
                    if d.index not in calls:
                        calls[d.index] = [d.function.name, ""]
                    calls[d.index][1] += d.function.arguments or ""
        self.assertEqual(reasons, ["tool_calls"])
        self.assertEqual([(n, json.loads(a)) for n, a in calls.values()],
                         [(t.function.name, json.loads(t.function.arguments)) for t in whole])


if __name__ == "__main__":
    run_suite()
