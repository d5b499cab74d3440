#!/usr/bin/env python3
"""Golden chat-template renders for tests/test_chat_template_jinja.cc (issue #18, item 1).

Renders the official chat templates of the models the issue names with Hugging Face's own
renderer (transformers.utils.chat_template_utils.render_jinja_template: jinja2 in a sandbox with
trim_blocks and lstrip_blocks, HF's tojson, raise_exception and strftime_now), over a set of
conversations (single turn, system + multi-turn, tools with a call and its result, text parts,
reasoning, a developer message), with add_generation_prompt true and false, and writes
tests/data/chat_template_golden.json: the conversations, and for each (template, conversation,
add_generation_prompt) the text, or the error HF raised. The C++ test needs no Python.

Templates: third_party/llama-jinja/templates/*.jinja (tools/setup.sh unpacks them from
llama-cpp-python's sdist), SmolLM2's, read from the GGUF in models/, and tests/data/templates/
(Gemma 3's, which neither ships: the `gemma3_template` string of unsloth 2026.3.4's
unsloth/chat_templates.py, PyPI sdist sha256 7b260d4a...c9054, "obtained via
print(tokenizer.chat_template)" of the model's tokenizer; extracted with ast.literal_eval).
strftime_now is fixed at NOW (local time) so that the renders are stable.

  python3 -m venv /tmp/venv && /tmp/venv/bin/pip install transformers jinja2 gguf
  /tmp/venv/bin/python tools/make_template_golden.py
"""
import datetime as _dt
import json
import os

import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu
from gguf import GGUFReader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "third_party", "llama-jinja", "templates")
OUT = os.path.join(ROOT, "tests", "data", "chat_template_golden.json")
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
NOW = _dt.datetime(2025, 3, 14, 12, 0, 0)  # noon: the same date in any time zone within 11 h

LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
DEEPSEEK = ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>")
# name, source (a file of TEMPLATES, or "gguf:<file in models/>"), bos_token, eos_token
TEMPLATE_LIST = [
    ("llama-3.1", "meta-llama-Llama-3.1-8B-Instruct.jinja", *LLAMA3),
    ("llama-3.2", "meta-llama-Llama-3.2-3B-Instruct.jinja", *LLAMA3),
    ("llama-3.3", "meta-llama-Llama-3.3-70B-Instruct.jinja", *LLAMA3),
    ("qwen-2.5", "Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    ("qwen-3", "Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>"),
    ("mistral-nemo", "mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    ("mistral-small-3.2", "Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>"),
    ("gemma-2", "google-gemma-2-2b-it.jinja", "<bos>", "<eos>"),
    ("gemma-3", "data:google-gemma-3-it.jinja", "<bos>", "<eos>"),
    ("phi-3.5", "microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>"),
    ("deepseek-r1-distill-llama", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", *DEEPSEEK),
    ("deepseek-r1-distill-qwen", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", *DEEPSEEK),
    ("smollm2", "gguf:" + SMOLLM2, "<|im_start|>", "<|im_end|>"),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
CALL = {  # Mistral wants 9 alphanumeric characters as the id
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
}
SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}

CONVERSATIONS = {
    "single": {"messages": [{"role": "user", "content": "Hello! What is 2+2?"}]},
    "system_multi_turn": {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello. How can I help?"},
            {"role": "user", "content": "  Name three primes.\n"},
        ]
    },
    "tools_question": {
        "messages": [SYSTEM, {"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [WEATHER_TOOL, TIME_TOOL],
    },
    "tools_call_and_result": {
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
             "content": "{\"temperature\": 18, \"sky\": \"clear\"}"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "tools_full_round": {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "18 C, clear"},
            {"role": "assistant", "content": "It is 18 C and clear in Paris."},
            {"role": "user", "content": "Thanks. And in Oslo?"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "text_parts": {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Describe "},
                                         {"type": "text", "text": "the sea."}]},
        ],
        "joined_as": "text_parts_joined",
    },
    # What a template that takes only strings gets for "text_parts" (the parts joined with "\n").
    "text_parts_joined": {"messages": [{"role": "user", "content": "Describe \nthe sea."}]},
    "unicode_and_specials": {
        "messages": [
            {"role": "user", "content": "Ünïcödé 日本語 🦙 \"quoted\" <|im_end|> [INST] <s>"},
            {"role": "assistant", "content": "OK: <|eot_id|>"},
            {"role": "user", "content": "again"},
        ]
    },
    "reasoning_history": {
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "2 plus 2 is 4."},
            {"role": "user", "content": "And 3+3?"},
        ]
    },
    "developer": {
        "messages": [
            {"role": "developer", "content": "Reply in French."},
            {"role": "user", "content": "Hello"},
        ]
    },
}


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


def read_template(source):
    if source.startswith("gguf:"):
        reader = GGUFReader(os.path.join(ROOT, "models", source[len("gguf:"):]))
        field = reader.fields["tokenizer.chat_template"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if source.startswith("data:"):
        with open(os.path.join(ROOT, "tests", "data", "templates", source[5:]), encoding="utf-8") as f:
            return f.read()
    with open(os.path.join(TEMPLATES, source), encoding="utf-8") as f:
        return f.read()


def render(template, conv, add_generation_prompt, bos, eos):
    try:
        rendered, _ = ctu.render_jinja_template(
            conversations=[conv["messages"]], tools=conv.get("tools"), chat_template=template,
            add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
        return {"text": rendered[0]}
    except jinja2.exceptions.TemplateError as e:  # raise_exception, or a template mistake
        return {"error": str(e), "error_type": type(e).__name__}
    except Exception as e:  # noqa: BLE001 - Python errors inside the template (TypeError, ...)
        return {"error": str(e), "error_type": type(e).__name__}


def main():
    ctu.datetime = _FixedDatetime  # strftime_now reads the module's datetime.now()
    templates, renders = [], []
    for name, source, bos, eos in TEMPLATE_LIST:
        template = read_template(source)
        templates.append({"name": name, "source": source, "bos": bos, "eos": eos,
                          "length": len(template.encode("utf-8"))})
        for cname, conv in CONVERSATIONS.items():
            for agp in (True, False):
                r = {"template": name, "conversation": cname, "add_generation_prompt": agp}
                r.update(render(template, conv, agp, bos, eos))
                renders.append(r)
    out = {
        "generator": "tools/make_template_golden.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "now": NOW.isoformat(),
        "templates": templates,
        "conversations": CONVERSATIONS,
        "renders": renders,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in r for r in renders)
    print(f"wrote {OUT}: {len(renders)} renders ({errors} errors) of {len(templates)} templates")


if __name__ == "__main__":
    main()
