#!/usr/bin/env python3
"""logprobs, echo, n / best_of, logit_bias, /tokenize, /detokenize and the vLLM-named metrics,
through the official `openai` Python client against `nanocascade serve` (SmolLM2 on the CPU).

Run as test_openai_client.py is (it shares its Server and venv helpers):

    python3 tests/server/test_openai_api.py
"""
import json
import math
import os
import re
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import MODEL_ID, ServerTestCase, run_suite  # noqa: E402


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class OpenAIApiTest(ServerTestCase):
    SERVER_ARGS = ("--max-n", "8")

    def chat(self, **kw):
        kw.setdefault("model", MODEL_ID)
        kw.setdefault("messages", [{"role": "user", "content": "Name a color."}])
        return self.client.chat.completions.create(**kw)

    def test_chat_logprobs_sorted_and_greedy_is_top(self):
        r = self.chat(max_tokens=8, temperature=0, logprobs=True, top_logprobs=5)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual("".join(t.token for t in content), r.choices[0].message.content)
        for t in content:
            tops = [x.logprob for x in t.top_logprobs]
            self.assertEqual(len(tops), 5)
            self.assertEqual(tops, sorted(tops, reverse=True))
            self.assertEqual(t.top_logprobs[0].token, t.token)  # greedy: the top entry
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob, places=5)
            self.assertLessEqual(t.logprob, 0)
            self.assertEqual(bytes(t.bytes).decode(), t.token)
            self.assertLessEqual(sum(math.exp(x) for x in tops), 1.0 + 1e-4)
        # Streaming gives the same tokens and numbers, chunk by chunk.
        parts = []
        for chunk in self.chat(max_tokens=8, temperature=0, logprobs=True, top_logprobs=5,
                               stream=True):
            for c in chunk.choices:
                if c.logprobs and c.logprobs.content:
                    parts += c.logprobs.content
        self.assertEqual([t.token for t in parts], [t.token for t in content])
        for a, b in zip(parts, content):
            self.assertAlmostEqual(a.logprob, b.logprob, places=4)

    def test_sampled_token_is_among_its_logprobs(self):
        r = self.chat(max_tokens=8, temperature=1.0, seed=3, logprobs=True, top_logprobs=20)
        for t in r.choices[0].logprobs.content:
            tops = {x.token: x.logprob for x in t.top_logprobs}
            if t.token in tops:
                self.assertAlmostEqual(tops[t.token], t.logprob, places=5)
            else:  # not in the top 20: less likely than all of them
                self.assertLessEqual(t.logprob, min(tops.values()) + 1e-6)

    def test_echo_scores_the_prompt_like_lm_eval(self):
        prompt = "The capital of France is"
        g = self.client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=3,
                                           temperature=0, logprobs=1)
        gen = g.choices[0].logprobs
        # lm-eval's loglikelihood request: the context and continuation as one prompt, echoed.
        ids = post(self.root + "/tokenize", {"prompt": prompt + g.choices[0].text})[1]["tokens"]
        r = self.client.completions.create(model=MODEL_ID, prompt=ids, max_tokens=0, echo=True,
                                           logprobs=1, temperature=0)
        c = r.choices[0]
        lp = c.logprobs
        self.assertEqual(c.text, prompt + g.choices[0].text)
        self.assertEqual(len(lp.tokens), len(ids))
        self.assertIsNone(lp.token_logprobs[0])  # the first token: nothing predicts it
        self.assertIsNone(lp.top_logprobs[0])
        self.assertTrue(all(x is not None and x <= 0 for x in lp.token_logprobs[1:]))
        self.assertEqual(lp.text_offset[0], 0)
        self.assertEqual(r.usage.completion_tokens, 0)
        # The continuation's prompt log-probabilities are the greedy generation's own
        # (prefill vs decode arithmetic: a loose tolerance), and greedy means top-1 everywhere.
        n = len(gen.tokens)
        for a, b in zip(lp.token_logprobs[-n:], gen.token_logprobs):
            self.assertAlmostEqual(a, b, delta=2e-3)
        for tok, top in zip(lp.tokens[-n:], lp.top_logprobs[-n:]):
            self.assertEqual(max(top, key=top.get), tok)

    def test_n_choices_compute_the_prompt_once(self):
        prompt = " ".join(f"w{i}" for i in range(60)) + " Then"
        before = metrics(self.server.port)
        r = self.client.completions.create(model=MODEL_ID, prompt=prompt, n=4, max_tokens=6,
                                           temperature=1.0, seed=5)
        after = metrics(self.server.port)
        self.assertEqual(sorted(c.index for c in r.choices), [0, 1, 2, 3])
        self.assertGreater(len({c.text for c in r.choices}), 1)
        p = r.usage.prompt_tokens
        full = (p - 1) // 16 * 16
        computed = after["nanocascade_prompt_tokens_computed_total"] - \
            before["nanocascade_prompt_tokens_computed_total"]
        self.assertEqual(computed, p + 3 * (p - full))
        hits = f'vllm:prefix_cache_hits_total{{model_name="{MODEL_ID}"}}'
        self.assertEqual(after[hits] - before[hits], 3 * full)
        # Streaming: chunks name their choice; each choice finishes once.
        texts, finished = {}, []
        for chunk in self.client.completions.create(model=MODEL_ID, prompt=prompt, n=3,
                                                    max_tokens=6, temperature=1.0, seed=5,
                                                    stream=True):
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + c.text
                if c.finish_reason:
                    finished.append(c.index)
        self.assertEqual(sorted(finished), [0, 1, 2])
        self.assertEqual([texts[i] for i in range(3)], [c.text for c in r.choices[:3]])

    def test_best_of_returns_the_most_likely(self):
        r = self.client.completions.create(model=MODEL_ID, prompt="Once upon a time", n=2,
                                           best_of=4, max_tokens=5, temperature=1.0, seed=9,
                                           logprobs=0)
        self.assertEqual(len(r.choices), 2)
        sums = [sum(c.logprobs.token_logprobs) for c in r.choices]
        self.assertGreaterEqual(sums[0], sums[1])

    def test_logit_bias_forces_and_forbids(self):
        tok = post(self.root + "/tokenize", {"prompt": " blue"})[1]["tokens"]
        self.assertEqual(len(tok), 1)
        r = self.chat(max_tokens=4, temperature=0, logit_bias={str(tok[0]): 100})
        self.assertEqual(r.choices[0].message.content, " blue" * 4)
        plain = self.chat(max_tokens=1, temperature=0, logprobs=True)
        first = plain.choices[0].logprobs.content[0].token
        first_id = post(self.root + "/tokenize", {"prompt": first,
                                                  "add_special_tokens": False})[1]["tokens"]
        r = self.chat(max_tokens=1, temperature=0, logit_bias={str(first_id[0]): -100})
        self.assertNotEqual(r.choices[0].message.content, first)

    def test_model_is_optional_and_tokenize_round_trips(self):
        status, body = post(self.server.url() + "/chat/completions",
                            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        self.assertEqual(status, 200)
        self.assertEqual(body["model"], MODEL_ID)
        status, t = post(self.root + "/tokenize", {"prompt": "Hello world"})
        self.assertEqual(status, 200)
        self.assertEqual(t["count"], len(t["tokens"]))
        self.assertEqual(t["max_model_len"], 8192)
        self.assertEqual(post(self.root + "/detokenize", {"tokens": t["tokens"]})[1]["prompt"],
                         "Hello world")
        status, c = post(self.root + "/tokenize", {"messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(status, 200)
        self.assertGreater(c["count"], 3)
        models = self.client.models.list().data
        self.assertEqual(models[0].model_extra["max_model_len"], 8192)

    def test_vllm_metrics(self):
        self.chat(max_tokens=3)
        m = metrics(self.server.port)
        label = f'{{model_name="{MODEL_ID}"}}'
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:gpu_cache_usage_perc", "vllm:prefix_cache_queries_total",
                     "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                     "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_count",
                     "vllm:time_per_output_token_seconds_count"):
            self.assertIn(name + label, m)
        self.assertTrue(0 <= m["vllm:gpu_cache_usage_perc" + label] <= 1)
        self.assertGreater(m["vllm:time_to_first_token_seconds_count" + label], 0)
        inf = f'vllm:time_to_first_token_seconds_bucket{{model_name="{MODEL_ID}",le="+Inf"}}'
        self.assertEqual(m[inf], m["vllm:time_to_first_token_seconds_count" + label])

    def test_bad_input_gets_400_and_the_server_stays_healthy(self):
        o = self.openai
        bad = [
            dict(logprobs=True, top_logprobs=21),
            dict(n=9),
            dict(logit_bias={"not-a-token": 1}),
            dict(logit_bias={"5": 101}),
            dict(logit_bias={"999999": 1}),
        ]
        for kw in bad:
            with self.assertRaises(o.BadRequestError, msg=str(kw)) as e:
                self.chat(max_tokens=2, **kw)
            self.assertIn(e.exception.param, ("top_logprobs", "n", "logit_bias"))
        with self.assertRaises(o.BadRequestError) as e:
            self.client.completions.create(model=MODEL_ID, prompt="x", logprobs=6)
        self.assertEqual(e.exception.param, "logprobs")
        status, err = post(self.root + "/detokenize", {"tokens": [1, 10 ** 6]})
        self.assertEqual(status, 400)
        self.assertEqual(err["error"]["param"], "tokens")
        with urllib.request.urlopen(self.root + "/health", timeout=10) as h:
            self.assertEqual(h.status, 200)
        self.assertEqual(self.chat(max_tokens=2).choices[0].finish_reason, "length")


if __name__ == "__main__":
    run_suite()
