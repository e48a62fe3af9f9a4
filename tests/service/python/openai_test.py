"""The OpenAI-compatible HTTP API through the official `openai` client (and plain HTTP where the
client cannot go): completions and chat completions, streamed and not, the kv extension,
logprobs, errors as HTTP 400 with an OpenAI-style body, routes, health, and /metrics parsed by
prometheus_client's own text parser while idle connections are open.
Usage: openai_test.py --http HOST:PORT --suite stories|chat [unittest args]
  stories: a server on stories260K (no chat template), 2 workers
  chat:    a server on SmolLM2-135M-Instruct (ChatML)
  drain:   --pid PID of a stories260K server started with --drain-grace-ms: SIGTERMs it"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

HTTP = None
ARGS = None
# stories260K, greedy, "Once upon a time" (shared/models/README.md; client_test.py)
GOLDEN = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410,
          408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
          432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286,
          267, 414, 270, 333, 415, 426, 13, 438, 310]
PROMPT_IDS = [1, 403, 407, 261, 378]
GOLDEN_START = ", there was a little girl named Lily."
LIMIT_S = 60  # bound on any one wait (a liveness bound, never a timing assertion)


def client():
    return openai.OpenAI(base_url="http://%s/v1" % HTTP, api_key="unused", max_retries=0,
                         timeout=LIMIT_S)


def http(method, path, body=None, raw=None):
    """(status, headers, body bytes) of one plain HTTP request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request("http://%s%s" % (HTTP, path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=LIMIT_S) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def metrics():
    """{sample name + labels: value} of GET /metrics, through the official parser."""
    status, headers, body = http("GET", "/metrics")
    assert status == 200, status
    out, families = {}, {}
    for fam in text_string_to_metric_families(body.decode()):
        families[fam.name] = fam
        for s in fam.samples:
            key = s.name + ("" if not s.labels else str(sorted(s.labels.items())))
            out[key] = s.value
    return out, families, headers


def wait_idle():
    """Waits (at most LIMIT_S) until no request runs, e.g. after a client closed a stream."""
    deadline = time.time() + LIMIT_S
    while time.time() < deadline and metrics()[0]["emserve_num_requests_running"] != 0:
        time.sleep(0.05)


class Common(unittest.TestCase):
    def assert_400(self, fn, field, param=None):
        with self.assertRaises(openai.BadRequestError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.status_code, 400)
        body = e.body if isinstance(e.body, dict) else {}
        self.assertIn(field, body.get("message", ""), body)
        self.assertEqual(body.get("type"), "invalid_request_error")
        if param:
            self.assertEqual(body.get("param"), param)
        return body


class StoriesTest(Common):
    """stories260K: completions (the model has no chat template)."""

    @classmethod
    def setUpClass(cls):
        cls.c = client()
        cls.model = cls.c.models.list().data[0].id

    def complete(self, **kw):
        args = dict(model=self.model, prompt="Once upon a time", max_tokens=60, temperature=0)
        args.update(kw)
        return self.c.completions.create(**args)

    def test_models(self):
        ms = self.c.models.list().data
        self.assertEqual([m.id for m in ms], ["stories260K"])
        self.assertEqual(ms[0].object, "model")
        self.assertEqual(self.c.models.retrieve("stories260K").id, "stories260K")
        with self.assertRaises(openai.NotFoundError):
            self.c.models.retrieve("gpt-4")

    def test_completion(self):
        r = self.complete()
        self.assertEqual(r.object, "text_completion")
        self.assertTrue(r.id.startswith("cmpl-"))
        self.assertEqual(r.model, self.model)
        self.assertEqual(len(r.choices), 1)
        self.assertTrue(r.choices[0].text.startswith(GOLDEN_START), r.choices[0].text)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual((r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens),
                         (5, 60, 65))
        # the same prompt as token ids gives the same text
        r2 = self.complete(prompt=PROMPT_IDS)
        self.assertEqual(r2.choices[0].text, r.choices[0].text)
        r3 = self.complete(prompt=[PROMPT_IDS])  # a batch of one
        self.assertEqual(r3.choices[0].text, r.choices[0].text)

    def test_default_max_tokens_is_openais_16(self):
        r = self.complete(max_tokens=None)
        self.assertEqual(r.usage.completion_tokens, 16)

    def test_stream_equals_whole(self):
        whole = self.complete().choices[0].text
        chunks = list(self.complete(stream=True, stream_options={"include_usage": True}))
        text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        self.assertEqual(text, whole)
        fin = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
        self.assertEqual(fin[-1], "length")
        self.assertTrue(all(f is None for f in fin[:-1]))
        self.assertGreater(len(fin), 10)  # streamed token by token, not in one piece
        self.assertEqual(chunks[-1].choices, [])  # the usage chunk
        self.assertEqual(chunks[-1].usage.completion_tokens, 60)
        ids = {ch.id for ch in chunks}
        self.assertEqual(len(ids), 1)

    def test_stream_raw_sse(self):
        """The wire format: data: {...} events, then data: [DONE]."""
        status, headers, body = http("POST", "/v1/completions", {
            "model": self.model, "prompt": "Once upon a time", "max_tokens": 5,
            "temperature": 0, "stream": True})
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/event-stream"))
        events = [e for e in body.decode().split("\n\n") if e]
        self.assertTrue(all(e.startswith("data: ") for e in events), events)
        self.assertEqual(events[-1], "data: [DONE]")
        objs = [json.loads(e[6:]) for e in events[:-1]]
        self.assertEqual(objs[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(objs[0]["object"], "text_completion")

    def test_stop_string(self):
        r = self.complete(stop=["Lily"])
        self.assertEqual(r.choices[0].text, ", there was a little girl named ")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        r = self.complete(stop="girl", stream=True)
        self.assertEqual("".join(ch.choices[0].text for ch in r), ", there was a little ")

    def test_include_stop_str_in_output(self):
        """vLLM's extension field keeps the matched stop string, streamed and not."""
        body = {"include_stop_str_in_output": True}
        r = self.complete(stop=["Lily"], extra_body=body)
        self.assertEqual(r.choices[0].text, ", there was a little girl named Lily")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        r = self.complete(stop="girl", stream=True, extra_body=body)
        self.assertEqual("".join(ch.choices[0].text for ch in r), ", there was a little girl")
        self.assert_400(lambda: self.complete(extra_body={"include_stop_str_in_output": 1}),
                        "include_stop_str_in_output", "include_stop_str_in_output")

    def test_stop_token_ids_extension(self):
        r = self.complete(extra_body={"stop_token_ids": [426]})
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.usage.completion_tokens, GOLDEN.index(426) + 1)

    def test_kv_extension(self):
        r = self.complete(prompt=PROMPT_IDS, extra_body={"kv": {"method": "ems", "budget": 16}})
        u = r.usage.model_extra
        self.assertEqual((u["kv_entries_kept"], u["kv_entries_full"]), (320, 1280))
        full = self.complete(prompt=PROMPT_IDS)
        self.assertEqual(full.usage.model_extra["kv_entries_kept"], 1280)
        # quant and params as numbers, booleans and strings
        r = self.complete(prompt=PROMPT_IDS, extra_body={"kv": {
            "method": "ems", "budget": 16, "quant": "int4", "params": {"ems.tau": 0.7}}})
        self.assertEqual(r.usage.model_extra["kv_entries_kept"], 320)

    def test_logprobs(self):
        r = self.complete(max_tokens=8, logprobs=3)
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 8)
        self.assertEqual("".join(lp.tokens), r.choices[0].text)
        self.assertEqual(lp.text_offset[0], 0)
        self.assertEqual(len(lp.top_logprobs[0]), 3)
        # greedy: the chosen token is the most likely one
        best = max(lp.top_logprobs[0].items(), key=lambda kv: kv[1])
        self.assertEqual(best[0], lp.tokens[0])
        self.assertAlmostEqual(best[1], lp.token_logprobs[0], places=5)
        self.assertTrue(all(v < 0 for v in lp.token_logprobs))
        r0 = self.complete(max_tokens=4, logprobs=0)
        self.assertEqual(len(r0.choices[0].logprobs.token_logprobs), 4)
        self.assertIsNone(r0.choices[0].logprobs.top_logprobs)

    def test_seed(self):
        a = self.complete(temperature=1.0, seed=7, max_tokens=30).choices[0].text
        b = self.complete(temperature=1.0, seed=7, max_tokens=30).choices[0].text
        c = self.complete(temperature=1.0, seed=8, max_tokens=30).choices[0].text
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_errors_are_400_with_a_message(self):
        cases = [
            (dict(temperature=-1), "temperature", "temperature"),
            (dict(top_p=2), "top_p", "top_p"),
            (dict(n=2), "n: only 1", "n"),
            (dict(max_tokens=0), "max_tokens", "max_tokens"),
            (dict(max_tokens=100000), "max_tokens", "max_tokens"),
            (dict(presence_penalty=0.5), "presence_penalty: not supported", "presence_penalty"),
            (dict(frequency_penalty=1), "frequency_penalty: not supported", "frequency_penalty"),
            (dict(best_of=3), "best_of", "best_of"),
            (dict(echo=True), "echo", "echo"),
            (dict(logprobs=21), "logprobs", "logprobs"),
            (dict(prompt=[1, 100000]), "prompt[1]", "prompt[1]"),
            (dict(prompt=["a", "b"]), "one prompt per request", "prompt"),
            (dict(prompt=[]), "prompt", "prompt"),
            (dict(stop=["x"] * 17), "stop", "stop"),
            (dict(extra_body={"kv": {"method": "bogus"}}), "kv.method", "kv.method"),
            (dict(extra_body={"kv": {"method": "ems", "budget": 16,
                                     "params": {"nope": 1}}}), "kv.nope", "kv.nope"),
            (dict(extra_body={"kv": {"method": "ems", "budget": 0}}), "kv.budget", "kv.budget"),
            (dict(extra_body={"kv": {"metod": "ems"}}), "kv.metod: unknown field", "kv.metod"),
            (dict(extra_body={"kv": {"method": "ems", "budget": "16"}}), "kv.budget", "kv.budget"),
            (dict(extra_body={"top_k": 100000}), "top_k", "top_k"),
            (dict(extra_body={"min_p": 1.5}), "min_p", "min_p"),
        ]
        for kw, want, param in cases:
            with self.subTest(kw=kw):
                self.assert_400(lambda: self.complete(**kw), want, param)
        # the same validation as gRPC: its message for the same field
        body = self.assert_400(lambda: self.complete(temperature=-1), "temperature")
        self.assertEqual(body["message"], "temperature must be in [0, 100]")

    def test_chat_without_template_is_400(self):
        self.assert_400(lambda: self.c.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": "Hello"}]),
            "model has no supported chat template", "messages")

    def test_unknown_model_is_404(self):
        with self.assertRaises(openai.NotFoundError) as cm:
            self.complete(model="gpt-4")
        self.assertEqual(cm.exception.body.get("code"), "model_not_found")

    def test_routes_and_bad_bodies(self):
        self.assertEqual(http("GET", "/nope")[0], 404)
        self.assertEqual(http("GET", "/metricsXYZ")[0], 404)
        self.assertEqual(http("GET", "/v1/completions")[0], 405)
        status, headers, _ = http("POST", "/metrics", raw=b"")
        self.assertEqual((status, headers["Allow"]), (405, "GET"))
        for raw, want in [(b"{", "not valid JSON"), (b"[1]", "JSON object"),
                          (b'{"prompt": 5}', "prompt"), (b'{"prompt": "x", "stream": 1}', "stream"),
                          (b'{"prompt": "x", "temperature": "hot"}', "temperature"),
                          (b'{"prompt": "x", "max_tokens": 2.5}', "max_tokens"),
                          (b'{}', "prompt: required"),
                          (b'{"prompt": ""}', "prompt: empty"),
                          (b'{"prompt": "\xff\xfe"}', "not valid UTF-8"),
                          (b'{"prompt": "a\\u0000b"}', "NUL"),
                          (b'{"prompt": "a\\\\u0000b", "max_tokens": 1}', None)]:
            with self.subTest(raw=raw):
                status, _, body = http("POST", "/v1/completions", raw=raw)
                if want is None:  # an escaped backslash before u0000 is plain text
                    self.assertEqual(status, 200, body)
                    continue
                self.assertEqual(status, 400)
                err = json.loads(body)["error"]
                self.assertIn(want, err["message"])
                self.assertEqual(err["type"], "invalid_request_error")

    def test_health(self):
        self.assertEqual(http("GET", "/health")[0], 200)
        self.assertEqual(http("GET", "/health/ready")[0], 200)
        self.assertEqual(http("HEAD", "/health")[0], 200)

    def test_concurrent(self):
        out = [None] * 6

        def run(i):
            out[i] = self.complete(prompt=PROMPT_IDS, max_tokens=20 + i).usage.completion_tokens

        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(out, [20 + i for i in range(6)])

    def test_client_going_away_cancels(self):
        """A stream whose client disconnects is cancelled: nothing stays running."""
        stream = self.complete(max_tokens=1500, extra_body={"ignore_eos": True}, stream=True)
        next(iter(stream))
        stream.close()
        deadline = time.time() + LIMIT_S
        while time.time() < deadline:
            m, _, _ = metrics()
            if m["emserve_num_requests_running"] == 0:
                break
            time.sleep(0.05)
        self.assertEqual(m["emserve_num_requests_running"], 0)

    def test_metrics_parsed_by_prometheus(self):
        before, fams, headers = metrics()
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        for name in ["emserve_num_requests_running", "emserve_num_requests_waiting",
                     "emserve_kv_cache_usage_perc", "emserve_serving", "emserve_requests",
                     "emserve_generation_tokens", "emserve_time_to_first_token_seconds",
                     "emserve_time_per_output_token_seconds"]:
            self.assertIn(name, fams)
        self.assertEqual(fams["emserve_requests"].type, "counter")
        self.assertEqual(fams["emserve_time_to_first_token_seconds"].type, "histogram")
        self.assertEqual(before["emserve_serving"], 1)
        self.complete(max_tokens=7)
        after, _, _ = metrics()
        self.assertEqual(after["emserve_requests_total"], before["emserve_requests_total"] + 1)
        self.assertEqual(after["emserve_generation_tokens_total"],
                         before["emserve_generation_tokens_total"] + 7)
        ttft = "emserve_time_to_first_token_seconds_count"
        self.assertEqual(after[ttft], before[ttft] + 1)

    def test_metrics_every_family_has_help(self):
        """Every family in the text has a HELP and a TYPE line (checked on the raw text and
        through the parser), the families of issue 11 are there with their types, and the build
        info names the version and the commit."""
        status, _, body = http("GET", "/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        typed = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
        helped = {l.split()[2] for l in text.splitlines() if l.startswith("# HELP ")}
        self.assertEqual(typed, helped)
        _, fams, _ = metrics()
        for fam in fams.values():
            self.assertTrue(fam.documentation, fam.name)
        want = {
            "emserve_e2e_request_latency_seconds": "histogram",
            "emserve_request_queue_time_seconds": "histogram",
            "emserve_request_prefill_time_seconds": "histogram",
            "emserve_request_decode_time_seconds": "histogram",
            "emserve_request_prompt_tokens": "histogram",
            "emserve_request_generation_tokens": "histogram",
            "emserve_request_success": "counter",
            "emserve_request_rejected": "counter",
            "emserve_kv_cache_bytes": "gauge",
            "emserve_kv_cache_full_bytes": "gauge",
            "emserve_kv_cache_usage_perc": "gauge",
            "emserve_kv_entries_evicted": "counter",
            "emserve_kv_entries_merged": "counter",
            "emserve_kv_entries_quantized": "counter",
            "emserve_kv_compression_seconds": "counter",
            "emserve_build_info": "gauge",
        }
        for name, typ in want.items():
            self.assertIn(name, fams)
            self.assertEqual(fams[name].type, typ, name)
        info = fams["emserve_build_info"].samples[0]
        self.assertEqual(info.value, 1)
        self.assertTrue(info.labels["version"] and info.labels["git"], info.labels)

    def test_metrics_move_under_load(self):
        """Requests with EMS compression and int4 quantization move the request histograms,
        the finish-reason counter and the compression counters of method ems; the KV gauges are
        positive while a request runs; a refused request counts as rejected."""
        quant = {"method": "ems", "budget": 16, "quant": "int4",
                 "params": {"quant.group": 4, "quant.residual": 4}}
        before, _, _ = metrics()
        n, tokens = 3, 40
        for _ in range(n):
            r = self.complete(max_tokens=tokens, extra_body={"kv": quant})
            self.assertEqual(r.choices[0].finish_reason, "length")
        self.assert_400(lambda: self.complete(max_tokens=0), "max_tokens")
        after, _, _ = metrics()

        def grew(key, by=None):
            if by is None:
                self.assertGreater(after[key], before[key], key)
            else:
                self.assertEqual(after[key] - before[key], by, key)

        for h in ["emserve_e2e_request_latency_seconds", "emserve_request_queue_time_seconds",
                  "emserve_request_prefill_time_seconds", "emserve_request_decode_time_seconds",
                  "emserve_request_prompt_tokens", "emserve_request_generation_tokens"]:
            grew(h + "_count", n)
            grew(h + "_bucket[('le', '+Inf')]", n)
        grew("emserve_request_prompt_tokens_sum", 5 * n)
        grew("emserve_request_generation_tokens_sum", tokens * n)
        grew("emserve_e2e_request_latency_seconds_sum")
        grew("emserve_request_success_total[('finished_reason', 'length')]", n)
        grew("emserve_request_success_total[('finished_reason', 'stop')]", 0)
        grew("emserve_request_rejected_total[('reason', 'invalid_argument')]", 1)
        ems = "[('method', 'ems')]"
        for c in ["emserve_kv_entries_evicted_total", "emserve_kv_entries_merged_total",
                  "emserve_kv_entries_quantized_total", "emserve_kv_compression_seconds_total"]:
            grew(c + ems)
        grew("emserve_kv_entries_evicted_total[('method', 'full')]", 0)

        stream = self.complete(max_tokens=400, stream=True,
                               extra_body={"kv": quant, "ignore_eos": True})
        try:
            it = iter(stream)
            for _ in range(50):
                next(it)
            m, _, _ = metrics()
            self.assertGreaterEqual(m["emserve_num_requests_running"], 1)
            self.assertGreater(m["emserve_kv_cache_bytes[('storage', 'f32')]"], 0)
            self.assertGreater(m["emserve_kv_cache_bytes[('storage', 'quantized')]"], 0)
            self.assertGreater(m["emserve_kv_cache_full_bytes"], 0)
            self.assertGreater(m["emserve_kv_cache_usage_perc"], 0)
            self.assertLessEqual(m["emserve_kv_cache_usage_perc"], 1)
        finally:
            stream.close()
            wait_idle()  # the next test counts tokens from a quiet server

    def test_two_scrapes_beside_an_idle_connection(self):
        """An open connection that sends nothing does not hold up two scrapes made in
        parallel: both answer (only success is asserted, never a time)."""
        host, port = HTTP.rsplit(":", 1)
        idle = socket.create_connection((host, int(port)))
        results = [None, None]

        def scrape(i):
            try:
                results[i] = metrics()[0]["emserve_serving"]
            except Exception as e:  # reported below
                results[i] = e

        try:
            threads = [threading.Thread(target=scrape, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(LIMIT_S)
            self.assertEqual(results, [1, 1])
        finally:
            idle.close()

    def test_idle_connections_do_not_block_a_scrape(self):
        """While idle TCP connections are open (silent ones, one with half a request) and one
        client trickles its request headers a byte at a time, /metrics and /health are fetched
        and each fetch completes before the trickling client gives up (the server has a thread
        per connection; the old hand-written one served one connection at a time, so the scrape
        waited behind the slow client for as long as it kept sending)."""
        host, port = HTTP.rsplit(":", 1)
        idle = [socket.create_connection((host, int(port))) for _ in range(3)]
        idle[1].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        slow = socket.create_connection((host, int(port)))
        slow.sendall(b"GET /metrics HTTP/1.0\r\nX-Slow: ")
        done, gave_up = threading.Event(), threading.Event()

        def trickle():
            end = time.time() + LIMIT_S
            while not done.is_set() and time.time() < end:
                slow.sendall(b"x")
                time.sleep(0.1)
            if not done.is_set():
                gave_up.set()

        trickler = threading.Thread(target=trickle)
        trickler.start()
        stream = self.complete(max_tokens=1500, extra_body={"ignore_eos": True}, stream=True)
        next(iter(stream))
        try:
            for _ in range(3):
                m, _, _ = metrics()
                self.assertGreaterEqual(m["emserve_num_requests_running"], 1)
                self.assertEqual(http("GET", "/health")[0], 200)
            self.assertFalse(gave_up.is_set(), "the scrape waited for the slow client")
        finally:
            done.set()
            trickler.join()
            stream.close()
            for s in idle + [slow]:
                s.close()


class ChatTest(Common):
    """SmolLM2-135M-Instruct (ChatML): chat completions."""

    @classmethod
    def setUpClass(cls):
        cls.c = client()
        cls.model = cls.c.models.list().data[0].id

    def chat(self, content="What is 2+2?", **kw):
        args = dict(model=self.model, messages=[{"role": "user", "content": content}],
                    temperature=0, max_tokens=40)
        args.update(kw)
        return self.c.chat.completions.create(**args)

    def test_chat(self):
        r = self.chat()
        self.assertEqual(r.object, "chat.completion")
        self.assertTrue(r.id.startswith("chatcmpl-"))
        m = r.choices[0].message
        self.assertEqual(m.role, "assistant")
        self.assertIn("4", m.content)
        self.assertNotIn("<|im_end|>", m.content)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 10)  # the template's system message and turns
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_chat_ends_at_eos_without_max_tokens(self):
        r = self.chat(max_tokens=None)
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_chat_stream_equals_whole(self):
        whole = self.chat().choices[0].message.content
        chunks = list(self.chat(stream=True, stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].object, "chat.completion.chunk")
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        self.assertEqual(text, whole)
        fin = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
        self.assertIn(fin[-1], ("stop", "length"))
        self.assertIsNotNone(chunks[-1].usage)

    def test_chat_system_and_parts(self):
        r1 = self.c.chat.completions.create(model=self.model, temperature=0, max_tokens=20,
                                            messages=[{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "Hi"}])
        r2 = self.c.chat.completions.create(model=self.model, temperature=0, max_tokens=20,
                                            messages=[{"role": "developer", "content": "Be brief."},
                                                      {"role": "user", "content": [
                                                          {"type": "text", "text": "Hi"}]}])
        self.assertEqual(r1.choices[0].message.content, r2.choices[0].message.content)
        self.assertEqual(r1.usage.prompt_tokens, r2.usage.prompt_tokens)

    def test_chat_logprobs(self):
        r = self.chat(max_tokens=6, logprobs=True, top_logprobs=2)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual(len(content[0].top_logprobs), 2)
        self.assertEqual(content[0].top_logprobs[0].token, content[0].token)
        self.assertEqual(bytes(content[0].bytes).decode("utf-8", "replace"), content[0].token)

    def test_chat_kv_extension(self):
        r = self.chat(max_tokens=20, extra_body={"kv": {"method": "streamingllm", "budget": 16}})
        u = r.usage.model_extra
        self.assertLess(u["kv_entries_kept"], u["kv_entries_full"])

    def test_chat_errors(self):
        self.assert_400(lambda: self.c.chat.completions.create(
            model=self.model, messages=[{"role": "tool", "content": "x"}]),
            "messages[0].role: unknown role 'tool'", "messages[0].role")
        self.assert_400(lambda: self.c.chat.completions.create(model=self.model, messages=[]),
                        "messages", "messages")
        self.assert_400(lambda: self.chat(n=2), "n: only 1", "n")
        self.assert_400(lambda: self.chat(temperature=101), "temperature", "temperature")
        self.assert_400(lambda: self.chat(top_logprobs=2), "top_logprobs", "top_logprobs")
        self.assert_400(lambda: self.chat(tools=[{"type": "function", "function": {
            "name": "f", "parameters": {}}}]), "tools", "tools")
        self.assert_400(lambda: self.chat(response_format={"type": "json_object"}),
                        "response_format", "response_format")
        self.assert_400(lambda: self.chat(extra_body={"kv": {"method": "h2o"}}), "kv", "kv")


class DrainTest(Common):
    """SIGTERM with --drain-grace-ms: a running stream finishes whole, /health/ready turns 503 and
    a new request is 503 while it does; then the server exits (checked by the shell)."""

    def test_drain(self):
        c = client()
        stream = c.completions.create(model="stories260K", prompt="Once upon a time",
                                      max_tokens=2000, temperature=0, stream=True,
                                      stream_options={"include_usage": True},
                                      extra_body={"ignore_eos": True})
        it = iter(stream)
        next(it)
        os.kill(ARGS.pid, signal.SIGTERM)
        deadline = time.time() + LIMIT_S
        while http("GET", "/health/ready")[0] != 503 and time.time() < deadline:
            time.sleep(0.01)
        self.assertEqual(http("GET", "/health/ready")[0], 503)
        status, _, body = http("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 2})
        self.assertEqual(status, 503, body)
        self.assertEqual(json.loads(body)["error"]["type"], "service_unavailable_error")
        self.assertEqual(http("GET", "/health")[0], 200)  # alive while it drains
        rest = list(it)
        self.assertEqual(rest[-2].choices[0].finish_reason, "length")
        self.assertEqual(rest[-1].usage.completion_tokens, 2000)  # the stream was not cut


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--suite", choices=["stories", "chat", "drain"], required=True)
    ap.add_argument("--pid", type=int, default=0)  # drain: the server to SIGTERM
    ARGS, rest = ap.parse_known_args()
    HTTP = ARGS.http
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(
        {"stories": StoriesTest, "chat": ChatTest, "drain": DrainTest}[ARGS.suite])
    ok = unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()
    sys.exit(0 if ok else 1)
