#!/usr/bin/env python3
"""Structured output through the official `openai` client against `nanocascade serve` (SmolLM2 on
the CPU): JSON schemas in strict mode (generated, validated with the `jsonschema` package), JSON
mode, regular expressions, EBNF grammars, choices, tool calls forced by tool_choice (required and
named, streamed and not, with a round trip), and bad grammars (400, the server healthy after).

A 135M model does not write such outputs by itself: every output here is what the grammar let
it write. Run as test_openai_client.py is:

    python3 tests/server/test_structured_output.py
"""
import json
import os
import random
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import MODEL_ID, ServerTestCase, run_suite  # noqa: E402

NUM_SCHEMAS = 52
TOOLS = [
    {"type": "function",
     "function": {"name": "get_weather", "description": "The weather in a city.",
                  "parameters": {"type": "object",
                                 "properties": {"city": {"type": "string", "maxLength": 12},
                                                "unit": {"enum": ["C", "F"]}},
                                 "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function",
     "function": {"name": "add", "description": "Adds two numbers.",
                  "parameters": {"type": "object",
                                 "properties": {"a": {"type": "integer", "minimum": 0,
                                                      "maximum": 99},
                                                "b": {"type": "integer", "minimum": 0,
                                                      "maximum": 99}},
                                 "required": ["a", "b"], "additionalProperties": False}}},
]


def leaf(rng):
    """A bounded leaf schema: the model's output stays short whatever it writes."""
    kind = rng.choice(["string", "pattern", "enum", "integer", "number", "boolean", "null",
                       "const"])
    if kind == "string":
        return {"type": "string", "maxLength": rng.randint(1, 10)}
    if kind == "pattern":
        return {"type": "string",
                "pattern": rng.choice([r"^[a-z]{2,5}$", r"^[A-Z][0-9]{3}$",
                                       r"^(yes|no|maybe)$", r"^[0-9]{2}-[0-9]{2}$"])}
    if kind == "enum":
        return {"enum": rng.sample(["red", "green", "blue", 1, 2, True, None, "x y"],
                                   rng.randint(1, 4))}
    if kind == "integer":
        lo = rng.randint(-50, 50)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 100)}
    if kind == "number":
        return {"type": "number", "minimum": 0, "maximum": 10}
    if kind == "const":
        return {"const": rng.choice(["fixed", 7, False])}
    return {"type": kind}


def schema(rng, depth=0):
    """An object schema in OpenAI's strict form: every property required, no others."""
    props = {}
    for i in range(rng.randint(1, 4)):
        roll = rng.random()
        if depth < 2 and roll < 0.2:
            props[f"obj{i}"] = schema(rng, depth + 1)
        elif depth < 2 and roll < 0.4:
            # Arrays of objects at the top level only: the output stays within max_tokens.
            items = schema(rng, 2) if depth == 0 and rng.random() < 0.3 else leaf(rng)
            props[f"list{i}"] = {"type": "array", "items": items, "minItems": rng.randint(0, 1),
                                 "maxItems": rng.randint(1, 3)}
        else:
            props[f"f{i}"] = leaf(rng)
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


class StructuredOutputTest(ServerTestCase):
    def chat(self, **kw):
        kw.setdefault("model", MODEL_ID)
        kw.setdefault("temperature", 0)
        kw.setdefault("max_tokens", 400)
        kw.setdefault("messages", [{"role": "user", "content": "Answer in JSON."}])
        return self.client.chat.completions.create(**kw)

    def test_generated_json_schemas_validate_in_strict_mode(self):
        import jsonschema
        rng = random.Random(18)
        schemas = [schema(rng) for _ in range(NUM_SCHEMAS)]
        # 8 new schemas at once: past 4 compiling the server answers 429 (Retry-After: 1), which
        # the SDK retries; on a loaded machine compilations take long, so it may retry often.
        client = self.client.with_options(max_retries=20)

        def run(i):
            fmt = {"type": "json_schema",
                   "json_schema": {"name": f"s{i}", "schema": schemas[i], "strict": True}}
            # Half greedy, half sampled: the grammar holds either way.
            return client.chat.completions.create(
                model=MODEL_ID, max_tokens=400,
                messages=[{"role": "user", "content": "Answer in JSON."}],
                response_format=fmt, temperature=0 if i % 2 else 0.8, seed=i)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(run, range(NUM_SCHEMAS)))
        for i, r in enumerate(results):
            with self.subTest(schema=i):
                c = r.choices[0]
                self.assertEqual(c.finish_reason, "stop", c.message.content)
                jsonschema.validate(json.loads(c.message.content), schemas[i])

    def test_json_object_mode(self):
        r = self.chat(response_format={"type": "json_object"}, max_tokens=200)
        if r.choices[0].finish_reason == "stop":
            self.assertIsInstance(json.loads(r.choices[0].message.content), dict)
        else:  # cut by max_tokens: still the start of an object
            self.assertTrue(r.choices[0].message.content.startswith("{"))

    def test_regex_grammar_and_choice_fields(self):
        regex = r"[A-Z][a-z]{2,6} [0-9]{1,3}(\.[0-9])?"
        for body in ({"guided_regex": regex}, {"structured_outputs": {"regex": regex}}):
            r = self.chat(extra_body=body, max_tokens=30).choices[0]
            self.assertEqual(r.finish_reason, "stop")
            self.assertRegex(r.message.content, "^" + regex + "$")
        ebnf = 'root ::= "[" num ("," num)? "]"\nnum ::= [1-9] [0-9]?'
        for body in ({"guided_grammar": ebnf}, {"structured_outputs": {"grammar": ebnf}}):
            r = self.chat(extra_body=body, max_tokens=30).choices[0]
            self.assertEqual(r.finish_reason, "stop")
            self.assertRegex(r.message.content, r"^\[[1-9][0-9]?(,[1-9][0-9]?)?\]$")
        for body in ({"guided_choice": ["yes", "no", "a.b*"]},
                     {"structured_outputs": {"choice": ["yes", "no", "a.b*"]}}):
            r = self.chat(extra_body=body, max_tokens=10).choices[0]
            self.assertIn(r.message.content, ["yes", "no", "a.b*"])
        # Completions take the same fields.
        c = self.client.completions.create(model=MODEL_ID, prompt="The year:", max_tokens=10,
                                           temperature=0, extra_body={"guided_regex": "[0-9]{4}"})
        self.assertRegex(c.choices[0].text, r"^[0-9]{4}$")

    def test_streamed_json_equals_whole(self):
        fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema(
            random.Random(3)), "strict": True}}
        whole = self.chat(response_format=fmt).choices[0].message.content
        text = "".join(c.choices[0].delta.content or ""
                       for c in self.chat(response_format=fmt, stream=True) if c.choices)
        self.assertEqual(text, whole)

    def forced(self, tool_choice, stream=False):
        # One call (several are test_tool_calls.py's test_forced_parallel_calls).
        msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
        return msgs, self.chat(messages=msgs, tools=TOOLS, tool_choice=tool_choice,
                               max_tokens=120, stream=stream, parallel_tool_calls=False)

    def test_tool_choice_required_and_named_are_enforced(self):
        import jsonschema
        params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
        named = {"type": "function", "function": {"name": "add"}}
        for choice in ("required", named):
            msgs, r = self.forced(choice)
            c = r.choices[0]
            self.assertEqual(c.finish_reason, "tool_calls")
            self.assertEqual(len(c.message.tool_calls), 1)
            call = c.message.tool_calls[0]
            if choice is named:
                self.assertEqual(call.function.name, "add")
            jsonschema.validate(json.loads(call.function.arguments), params[call.function.name])
            # Streamed: the same call, its arguments in fragments.
            _, chunks = self.forced(choice, stream=True)
            calls, reasons = {}, []
            for chunk in chunks:
                for ch in chunk.choices:
                    reasons += [ch.finish_reason] if ch.finish_reason else []
                    for d in ch.delta.tool_calls or []:
                        if d.id:
                            calls[d.index] = {"name": d.function.name, "arguments": ""}
                        calls[d.index]["arguments"] += d.function.arguments or ""
            self.assertEqual(reasons, ["tool_calls"])
            self.assertEqual(list(calls), [0])
            self.assertEqual(calls[0]["name"], call.function.name)
            self.assertEqual(json.loads(calls[0]["arguments"]), json.loads(call.function.arguments))
        # The round trip: the call and its result go back; the answer is free text.
        history = msgs + [
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": call.id, "type": "function",
                             "function": {"name": call.function.name,
                                          "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "42"}]
        a = self.chat(messages=history, tools=TOOLS, max_tokens=10).choices[0]
        self.assertIn(a.finish_reason, ("stop", "length"))
        self.assertIsNone(a.message.tool_calls)

    def test_bad_grammars_get_400_and_the_server_stays_healthy(self):
        bad = [
            (dict(response_format={"type": "json_schema",
                                   "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}),
             "response_format"),
            (dict(response_format={"type": "yaml"}), "response_format"),
            (dict(response_format={"type": "json_schema"}), "response_format"),
            (dict(extra_body={"guided_regex": "([a-z]"}), "guided_regex"),
            (dict(extra_body={"guided_grammar": "root ::= nothing_defined"}), "guided_grammar"),
            (dict(extra_body={"guided_json": "{not json"}), "guided_json"),
            (dict(extra_body={"guided_choice": []}), "guided_choice"),
            (dict(extra_body={"structured_outputs": {"regex": "a", "grammar": "b"}}),
             "structured_outputs"),
            (dict(response_format={"type": "json_object"}, extra_body={"guided_regex": "a"}),
             "guided_regex"),
        ]
        for kw, param in bad:
            with self.assertRaises(self.openai.BadRequestError, msg=param) as e:
                self.chat(**kw)
            self.assertEqual(e.exception.status_code, 400)
            self.assertEqual(e.exception.param, param)
        with urllib.request.urlopen(self.root + "/health", timeout=10) as h:
            self.assertEqual(h.status, 200)
        r = self.chat(extra_body={"guided_regex": "ok"}, max_tokens=5).choices[0]
        self.assertEqual((r.message.content, r.finish_reason), ("ok", "stop"))


if __name__ == "__main__":
    run_suite()
