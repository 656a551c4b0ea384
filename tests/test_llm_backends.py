"""OpenAI-compatible LLM parser: response normalisation, retries, secrets and the resumable cache.

A real chat-completions server runs on 127.0.0.1 in a thread; its behaviour is scripted
per caption (the user message), and it counts every request it receives.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.tagging.llm import (
    PARSER_PROMPT,
    PARSER_VERSION,
    LLMParser,
    LLMRequestError,
    OpenAIChatClient,
)
from harness.tagging.responses import ParseReport, normalise_labels

SECRET = "sk-test-7f3a9c-do-not-leak"
KEY_ENV = "AUDIO_HARNESS_TEST_LLM_KEY"


def ok(labels):
    return ("content", json.dumps({"labels": labels}))


class ScriptedServer:
    """Chat-completions server: per-caption scripts of actions, then a default answer."""

    def __init__(self):
        self.scripts: dict[str, list[tuple]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (caption, Authorization header)
        self.bodies: list[dict] = []
        self.fail_after: int | None = None  # after this many requests: HTTP 503 forever
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                caption = body["messages"][-1]["content"]
                with outer.lock:
                    outer.requests.append((caption, self.headers.get("Authorization")))
                    outer.bodies.append(body)
                    n = len(outer.requests)
                    script = outer.scripts.get(caption)
                    action = script.pop(0) if script else ok(caption.split())
                    if outer.fail_after is not None and n > outer.fail_after:
                        action = ("status", 503, {}, "overloaded")
                try:
                    self._answer(action)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _answer(self, action):
                kind = action[0]
                if kind == "sleep":
                    time.sleep(action[1])
                    action = ("content", action[2])
                    kind = "content"
                if kind == "content":
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": action[1]}}]})
                    self._send(200, {}, payload)
                elif kind == "status":
                    _, code, headers, text = action
                    if text == "ECHO_AUTH":  # a hostile server that echoes the credentials
                        text = f"bad request, you sent {self.headers.get('Authorization')}"
                    self._send(code, headers, text)
                elif kind == "raw":
                    self._send(200, {}, action[1])

            def _send(self, code, headers, text):
                data = text.encode()
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def count(self, caption: str) -> int:
        with self.lock:
            return sum(1 for c, _ in self.requests if c == caption)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_client(server, **kw):
    params = dict(api_key_env=KEY_ENV, timeout=2, max_retries=3, backoff=0.01, concurrency=2)
    params.update(kw)
    return OpenAIChatClient(server.url, "qwen2.5-7b-instruct", **params)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, labels, problems",
    [
        ('{"labels": ["dog", "bark", "park"]}', ["dog", "bark", "park"], []),
        ('Sure! Here are the tags: {"labels": ["dog", "bark", "park"]} Hope it helps {x}',
         ["dog", "bark", "park"], ["prose"]),
        ('```json\n{"labels": ["dog", "bark", "park"]}\n```', ["dog", "bark", "park"], ["fenced"]),
        ('{"labels": ["dog", "bark", "park"', None, ["invalid_json"]),
        ("no json at all", None, ["invalid_json"]),
        ('{"tags": ["dog", "bark", "park"]}', None, ["missing_labels"]),
        ('["dog", "bark", "park"]', None, ["missing_labels"]),
        ('{"labels": "dog, bark, park"}', None, ["wrong_type"]),
        ('{"labels": ["dog", "bark", "city park", "a very long phrase"]}',
         ["dog", "bark", "city-park"], ["multi_word"]),
        ('{"labels": ["Dog", "BARK!", "park."]}', ["dog", "bark", "park"], ["case", "punctuation"]),
        ('{"labels": ["dog", "bark", "dog", "Dog", "park"]}', ["dog", "bark", "park"], ["case", "duplicate"]),
        ('{"labels": ["dog", 3, "", "bark", "park"]}', ["dog", "bark", "park"], ["non_string", "empty_label"]),
        ('{"labels": ["dog", "bark"]}', None, ["too_few"]),
        ('{"labels": [' + ", ".join(f'"t{i}"' for i in range(20)) + "]}",
         [f"t{i}" for i in range(15)], ["too_many"]),
        ('{"labels": ["high-pitched", "dog", "bark"]}', ["high-pitched", "dog", "bark"], []),
    ],
)
def test_normalise_labels(raw, labels, problems):
    assert normalise_labels(raw) == (labels, problems)


def test_normalise_labels_limits_are_parameters():
    raw = json.dumps({"labels": ["a", "b", "c", "d", "e"]})
    assert normalise_labels(raw, min_labels=6) == (None, ["too_few"])
    assert normalise_labels(raw, max_labels=2) == (None, ["too_many", "too_few"])
    assert normalise_labels(raw, min_labels=1, max_labels=2) == (["a", "b"], ["too_many"])


def test_prompt_states_the_contract():
    for phrase in ('"labels"', "about 10", "one word", "lowercase", "hyphens", "duplicates",
                   '"car"', '"automobile"', "scene", "sound sources", "sound events",
                   "production", "intent"):
        assert phrase in PARSER_PROMPT, phrase
    assert PARSER_VERSION == "openai-1"


# ---------------------------------------------------------------- batch over the server


def test_batch_counts_every_normalisation_case(server, tmp_path):
    script = {
        "ok": ok(["dog", "bark", "park"]),
        "prose": ("content", 'Tags: {"labels": ["dog", "bark", "park"]}. Done.'),
        "fenced": ("content", '```json\n{"labels": ["dog", "bark", "park"]}\n```'),
        "malformed": ("content", '{"labels": ["dog", "bark",'),
        "multi": ok(["dog", "barking dog", "loud city park noise", "park"]),
        "dupes": ok(["dog", "dog", "bark", "park"]),
        "many": ok([f"t{i}" for i in range(20)]),
        "few": ok(["dog"]),
        "upper": ok(["Dog", "Bark", "park"]),
    }
    for caption, action in script.items():
        server.scripts[caption] = [action]
    parser = LLMParser(make_client(server), tmp_path / "cache.jsonl")
    captions = list(script) + ["ok"]  # a repeated caption is requested once
    labels, report = parser.parse_many(captions)

    assert labels[0] == labels[-1] == ["dog", "bark", "park"]
    assert labels[captions.index("malformed")] == []
    assert labels[captions.index("few")] == []
    assert labels[captions.index("multi")] == ["dog", "barking-dog", "park"]
    assert len(labels[captions.index("many")]) == 15
    assert {c: server.count(c) for c in script} == {c: 1 for c in script}
    d = report.to_dict()
    assert d["problems"] == {"invalid_json": 1, "prose": 1, "fenced": 1, "case": 1, "multi_word": 1,
                             "duplicate": 1, "too_many": 1, "too_few": 1}
    assert (d["total"], d["accepted"], d["rejected"], d["request_errors"]) == (10, 8, 2, 0)
    assert (d["requested"], d["cache_hits"]) == (9, 0)
    # Nothing is lost: the rejected responses are in the cache, raw.
    raws = [json.loads(line)["raw"] for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert '{"labels": ["dog", "bark",' in raws and len(raws) == 9
    # The request follows the paper's recipe.
    body = server.bodies[0]
    assert body["model"] == "qwen2.5-7b-instruct"
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.9, 512)
    assert body["messages"][0] == {"role": "system", "content": PARSER_PROMPT}


def test_retries_429_with_retry_after_and_5xx(server, tmp_path):
    server.scripts["rate"] = [("status", 429, {"Retry-After": "1"}, "slow down"), ok(["a", "b", "c"])]
    server.scripts["flaky"] = [("status", 500, {}, "boom"), ("status", 502, {}, "boom"), ok(["d", "e", "f"])]
    client = make_client(server)
    start = time.monotonic()
    assert client.complete([{"role": "user", "content": "rate"}]) == json.dumps({"labels": ["a", "b", "c"]})
    assert time.monotonic() - start >= 0.9  # Retry-After honoured (backoff alone is 0.01 s)
    assert server.count("rate") == 2
    assert client.complete([{"role": "user", "content": "flaky"}]) == json.dumps({"labels": ["d", "e", "f"]})
    assert server.count("flaky") == 3


def test_retry_after_is_capped(server):
    server.scripts["rate"] = [("status", 429, {"Retry-After": "3600"}, ""), ok(["a", "b", "c"])]
    client = make_client(server, max_retry_after=0.05)
    start = time.monotonic()
    client.complete([{"role": "user", "content": "rate"}])
    assert time.monotonic() - start < 1.5
    assert server.count("rate") == 2


def test_gives_up_after_max_retries(server):
    server.scripts["down"] = [("status", 503, {}, "down")] * 10
    with pytest.raises(LLMRequestError, match="503.*gave up after 3 attempts") as info:
        make_client(server, max_retries=2).complete([{"role": "user", "content": "down"}])
    assert info.value.retryable and info.value.status == 503
    assert server.count("down") == 3


def test_timeout_is_retried(server):
    server.scripts["slow"] = [("sleep", 1.0, json.dumps({"labels": ["x", "y", "z"]})), ok(["a", "b", "c"])]
    client = make_client(server, timeout=0.3)
    assert json.loads(client.complete([{"role": "user", "content": "slow"}]))["labels"] == ["a", "b", "c"]
    assert server.count("slow") == 2


def test_400_is_not_retried_and_the_key_never_leaks(server, tmp_path):
    server.scripts["bad"] = [("status", 400, {}, "ECHO_AUTH")] * 5
    client = make_client(server)
    with pytest.raises(LLMRequestError, match="HTTP 400") as info:
        client.complete([{"role": "user", "content": "bad"}])
    assert server.count("bad") == 1
    assert not info.value.retryable and info.value.status == 400
    assert "bad request" in str(info.value) and SECRET not in str(info.value)
    assert SECRET not in repr(info.value)

    # In a batch the error is counted, and the other captions go on.
    server.scripts["bad"] = [("status", 400, {}, "ECHO_AUTH")]
    labels, report = LLMParser(client, tmp_path / "c.jsonl").parse_many(["bad", "dog bark park"])
    assert labels == [[], ["dog", "bark", "park"]]
    assert report.to_dict()["errors"] == {"http_400": 1}
    assert report.request_errors == 1 and report.accepted == 1


def test_api_key_is_sent_and_never_stored(server, tmp_path):
    cache = tmp_path / "cache.jsonl"
    LLMParser(make_client(server), cache).parse_many(["dog bark park", "car horn street"])
    assert {auth for _, auth in server.requests} == {f"Bearer {SECRET}"}
    assert SECRET not in cache.read_text()


def test_key_is_read_at_call_time(server, monkeypatch):
    client = make_client(server)
    monkeypatch.setenv(KEY_ENV, "sk-rotated")
    client.complete([{"role": "user", "content": "a b c"}])
    monkeypatch.delenv(KEY_ENV)
    client.complete([{"role": "user", "content": "d e f"}])
    assert [auth for _, auth in server.requests] == ["Bearer sk-rotated", None]


def test_bad_envelope_is_counted_not_fatal(server, tmp_path):
    server.scripts["weird"] = [("raw", '{"choices": []}')]
    labels, report = LLMParser(make_client(server), tmp_path / "c.jsonl").parse_many(["weird", "a b c"])
    assert labels == [[], ["a", "b", "c"]]
    assert report.errors == {"bad_envelope": 1}
    assert server.count("weird") == 1  # not retried


def test_resume_after_interruption(server, tmp_path):
    captions = [f"caption{i} word{i} thing{i}" for i in range(10)]
    cache = tmp_path / "cache.jsonl"
    server.fail_after = 5  # the server goes down for good after five requests
    client = make_client(server, concurrency=1, max_retries=1)
    labels, report = LLMParser(client, cache).parse_many(captions)
    assert report.accepted == 5 and report.request_errors == 5
    done = [c for c, lab in zip(captions, labels) if lab]
    assert len(done) == 5 and all(server.count(c) == 1 for c in done)
    assert len(cache.read_text().splitlines()) == 5  # failed requests are not cached

    server.fail_after = None  # healthy again: only the missing captions are requested
    labels, report = LLMParser(make_client(server), cache).parse_many(captions)
    assert labels == [c.split() for c in captions]
    assert (report.cache_hits, report.requested, report.accepted) == (5, 5, 10)
    assert all(server.count(c) == 1 for c in done)
    assert all(server.count(c) == 3 for c in captions if c not in done)  # 2 failed tries, then 1 OK
    assert len(cache.read_text().splitlines()) == 10

    # A third run asks nothing.
    n = len(server.requests)
    assert LLMParser(make_client(server), cache).parse_many(captions)[0] == labels
    assert len(server.requests) == n


def test_torn_last_cache_line_is_tolerated(server, tmp_path):
    cache = tmp_path / "cache.jsonl"
    parser = LLMParser(make_client(server), cache)
    parser.parse_many(["a b c", "d e f"])
    with open(cache, "a") as f:
        f.write('{"key": "' + parser.key("g h i") + '", "raw": "{\\"lab')  # killed mid-write
    labels, report = parser.parse_many(["a b c", "d e f", "g h i"])
    assert labels == [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    assert (report.cache_hits, report.requested) == (2, 1)
    # The record written after the torn line is readable: the cache stays usable.
    lines = cache.read_text().splitlines()
    assert json.loads(lines[-1])["caption"] == "g h i"
    assert len(parser.read_cache()) == 3
    n = len(server.requests)
    parser.parse_many(["g h i"])
    assert len(server.requests) == n


def test_cache_key_covers_model_prompt_and_sampling(server, tmp_path):
    base = LLMParser(make_client(server), tmp_path / "c.jsonl")
    keys = {
        base.key("dog"),
        LLMParser(make_client(server, temperature=0.7), tmp_path / "c.jsonl").key("dog"),
        LLMParser(make_client(server), tmp_path / "c.jsonl", prompt="other").key("dog"),
        LLMParser(OpenAIChatClient(server.url, "other-model"), tmp_path / "c.jsonl").key("dog"),
        base.key("cat"),
    }
    assert len(keys) == 5


def test_report_to_dict_is_json():
    report = ParseReport()
    report.add(["a", "b", "c"], ["case"])
    report.add(None, ["too_few"])
    report.add_error("timeout")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["problems"] == {"case": 1, "too_few": 1}
    assert (d["total"], d["accepted"], d["rejected"], d["request_errors"]) == (3, 1, 1, 1)


def test_tags_parse_cli_with_openai_backend_resumes_from_its_cache(server, tmp_path, capsys):
    from harness.cli import main

    captions = tmp_path / "captions.csv"
    captions.write_text("audiocap_id,caption\n1,dog barks loudly outside\n2,rain falls on roof\n")
    out = tmp_path / "tags.jsonl"
    argv = ["tags", "parse", "--captions", str(captions), "--parser", "openai", "--base-url", server.url,
            "--model", "test-model", "--api-key-env", KEY_ENV, "--out", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"id": "1", "tags": ["dog", "barks", "loudly", "outside"]},
                    {"id": "2", "tags": ["rain", "falls", "on", "roof"]}]
    assert len(server.requests) == 2 and SECRET not in (tmp_path / "tags.jsonl.cache.jsonl").read_text()
    assert main(argv) == 0  # a rerun is answered from the cache
    assert len(server.requests) == 2
    assert "0 requested, 2 from the cache" in capsys.readouterr().err.splitlines()[-2]  # the report, in one line
    report = json.loads((tmp_path / "parse_report.json").read_text())  # and as a file, as the stage writes it
    assert report["cache_hits"] == 2 and report["accepted"] == 2 and report["requested"] == 0


# ---------------------------------------------------------------- failures told truly


def test_an_answer_cut_at_the_token_limit_is_counted_as_truncated(server, tmp_path):
    cut = json.dumps({"choices": [{"message": {"role": "assistant", "content": '{"labels": ["dog", "ba'},
                                   "finish_reason": "length"}]})
    whole = json.dumps({"choices": [{"message": {"role": "assistant", "content": "no json at all"},
                                     "finish_reason": "stop"}]})
    server.scripts = {"a cut answer": [("raw", cut)], "a prose answer": [("raw", whole)]}
    cache = tmp_path / "cache.jsonl"
    parser = LLMParser(make_client(server), cache)
    labels, report = parser.parse_many(["a cut answer", "a prose answer", "dog barks in park"])
    assert labels == [[], [], ["dog", "barks", "in", "park"]]
    assert report.problems == {"truncated": 1, "invalid_json": 1} and report.rejected == 2
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [line.get("truncated", False) for line in lines].count(True) == 1
    assert {line["parser"] for line in lines} == {PARSER_VERSION}
    # read back from the cache, the cut answer is still known as cut
    _, again = LLMParser(make_client(server), cache).parse_many(["a cut answer"])
    assert again.cache_hits == 1 and again.problems == {"truncated": 1}
    assert normalise_labels('{"labels": ["dog", "ba', truncated=True) == (None, ["truncated"])
    assert normalise_labels('{"labels": ["dog", "bark", "park"]}', truncated=True) == (["dog", "bark", "park"], [])


def test_tags_parse_with_every_request_failing_exits_non_zero(server, tmp_path, capsys, monkeypatch):
    import harness.tagging.parsers as parsers
    from harness.cli import main

    server.fail_after = 0  # HTTP 503 for every request
    captions = tmp_path / "captions.csv"
    captions.write_text("audiocap_id,caption\n1,dog barks\n2,rain falls\n")
    out = tmp_path / "tags.jsonl"
    argv = ["tags", "parse", "--captions", str(captions), "--parser", "openai", "--base-url", server.url,
            "--model", "m", "--api-key-env", KEY_ENV, "--out", str(out), "--concurrency", "1"]
    real = parsers.make_llm_parser

    def quick(config, runtime, cache_path):  # retries without waiting
        parser = real(config, runtime, cache_path)
        parser.client.backoff, parser.client.max_retries = 0.001, 1
        return parser

    monkeypatch.setattr(parsers, "make_llm_parser", quick)
    assert main(argv) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "every one of the 2 requests failed" in errors[0] and "HTTP 503" in errors[0]
    assert not out.exists()
    report = json.loads((tmp_path / "parse_report.json").read_text())
    assert report["failed_requests"] == 2 and report["errors"] == {"http_503": 2}


def test_tags_parse_against_no_server_is_one_line(tmp_path, capsys):
    import socket

    from harness.cli import main

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    captions = tmp_path / "captions.csv"
    captions.write_text("audiocap_id,caption\n1,dog barks\n")
    assert main(["tags", "parse", "--captions", str(captions), "--parser", "openai", "--base-url",
                 f"http://127.0.0.1:{port}/v1", "--model", "m", "--out", str(tmp_path / "t.jsonl")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot reach http://127.0.0.1:{port}/v1" in errors[0]
    assert "is the server running?" in errors[0]
