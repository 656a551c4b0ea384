"""Captioner backends: template captions, and an audio captioning model behind an
OpenAI-compatible server (real WAV files, decoded by Lhotse, sent base64, decoded again by
the server), with retries, timeouts, bounded concurrency and a resumable cache.

The server is real (127.0.0.1, a thread): it decodes the audio of each request, finds its
dominant frequency with an FFT and answers "a steady tone at N hz", so a caption proves
that the right audio arrived intact.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from harness.tagging.captioners import (
    CAPTIONER_SAMPLING,
    OpenAICaptioner,
    caption_cuts,
    join_tags,
    template_caption,
)
from harness.tagging.llm import OpenAIChatClient

SECRET = "sk-caption-test-1b2c-never-written"
KEY_ENV = "AUDIO_HARNESS_TEST_CAPTION_KEY"


def dominant_hz(wav: bytes) -> tuple[int, int]:
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    spectrum = np.abs(np.fft.rfft(audio))
    return int(round(np.argmax(spectrum) * sr / len(audio))), sr


class AudioServer:
    """Chat completions with audio input; scripted failures per tone frequency."""

    def __init__(self):
        self.scripts: dict[int, list[tuple]] = {}
        self.requests: list[int] = []
        self.rates: list[int] = []
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                parts = body["messages"][-1]["content"]
                audio = next(p for p in parts if p["type"] in ("input_audio", "audio_url"))
                if audio["type"] == "input_audio":
                    data = audio["input_audio"]["data"]
                else:
                    data = audio["audio_url"]["url"].split("base64,", 1)[1]
                hz, sr = dominant_hz(base64.b64decode(data))
                with outer.lock:
                    outer.requests.append(hz)
                    outer.rates.append(sr)
                    outer.bodies.append(body)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    script = outer.scripts.get(hz)
                    action = script.pop(0) if script else ("ok",)
                try:
                    time.sleep(outer.delay)
                    if action[0] == "sleep":
                        time.sleep(action[1])
                    if action[0] == "status":
                        self._send(action[1], json.dumps({"error": "scripted"}))
                    else:
                        content = "" if action[0] == "empty" else f"a steady tone at {hz} hz"
                        self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _send(self, code, text):
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def count(self, hz: int) -> int:
        return self.requests.count(hz)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    s = AudioServer()
    yield s
    s.close()


def tone_cut(folder, hz: int, name: str | None = None, sr: int = 22050, seconds: float = 1.0) -> dict:
    """A Lhotse cut dict over a real WAV file of a pure tone (22.05 kHz: the captioner resamples)."""
    from lhotse import Recording

    name = name or f"tone{hz}"
    path = folder / f"{name}.wav"
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.5 * np.sin(2 * np.pi * hz * t), sr)
    return Recording.from_file(path, recording_id=name).to_cut().to_dict()


def make_captioner(server, cache, **kw):
    client_kw = dict(api_key_env=KEY_ENV, timeout=kw.pop("timeout", 2), max_retries=kw.pop("max_retries", 3),
                     backoff=0.01, concurrency=kw.pop("concurrency", 2))
    client = OpenAIChatClient(server.url, "qwen3-omni-captioner", **client_kw, **CAPTIONER_SAMPLING)
    return OpenAICaptioner(client, cache, **kw)


TONES = (300, 500, 700, 900)


@pytest.fixture
def cuts(tmp_path):
    return [tone_cut(tmp_path, hz) for hz in TONES]


def test_captions_come_from_the_decoded_audio_and_a_rerun_sends_nothing(server, cuts, tmp_path):
    cache = tmp_path / "captions.jsonl"
    captions, report = make_captioner(server, cache).caption(cuts)
    assert captions == {f"tone{hz}": f"a steady tone at {hz} hz" for hz in TONES}
    assert sorted(server.requests) == list(TONES)
    assert set(server.rates) == {16000}  # resampled from 22.05 kHz before sending
    assert report.captioned == 4 and report.requested == 4 and report.cache_hits == 0
    body = server.bodies[0]
    assert body["model"] == "qwen3-omni-captioner"
    assert body["temperature"] == CAPTIONER_SAMPLING["temperature"] and body["top_p"] == CAPTIONER_SAMPLING["top_p"]
    assert [p["type"] for p in body["messages"][0]["content"]] == ["input_audio"]  # audio only: the Captioner model

    again, report2 = make_captioner(server, cache).caption(cuts)
    assert again == captions and len(server.requests) == 4
    assert report2.cache_hits == 4 and report2.requested == 0
    assert SECRET not in cache.read_text()
    assert len(cache.read_text().splitlines()) == 4


def test_transient_failures_are_retried_and_timeouts_too(server, cuts, tmp_path):
    server.scripts = {300: [("status", 500)], 500: [("status", 429)], 700: [("sleep", 3)]}
    captions, report = make_captioner(server, tmp_path / "c.jsonl", timeout=1).caption(cuts)
    assert len(captions) == 4 and report.request_errors == 0
    assert server.count(300) == 2 and server.count(500) == 2 and server.count(700) == 2 and server.count(900) == 1


def test_a_failing_clip_never_stops_the_batch_and_is_asked_again_on_rerun(server, cuts, tmp_path):
    cache = tmp_path / "c.jsonl"
    server.scripts = {500: [("status", 503)] * 2, 700: [("status", 400)]}
    captions, report = make_captioner(server, cache, max_retries=1).caption(cuts)
    assert set(captions) == {"tone300", "tone900"}
    assert report.request_errors == 2 and report.errors == {"http_503": 1, "http_400": 1}
    assert server.count(700) == 1  # a 400 is not retried
    before = len(server.requests)
    captions, report = make_captioner(server, cache).caption(cuts)
    assert len(captions) == 4 and report.cache_hits == 2 and report.requested == 2
    assert sorted(server.requests[before:]) == [500, 700]  # no duplicate request for cached clips


def test_corrupt_audio_is_counted_and_listed_and_empty_replies_too(server, cuts, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    bad = dict(cuts[0], id="broken-cut")
    bad["recording"] = dict(bad["recording"], id="broken",
                            sources=[{"type": "file", "channels": [0], "source": str(broken)}])
    server.scripts = {900: [("empty",)]}
    captions, report = make_captioner(server, tmp_path / "c.jsonl").caption([bad, *cuts])
    assert set(captions) == {"tone300", "tone500", "tone700"}
    assert report.unreadable == 1 and report.unreadable_ids == ["broken-cut"]
    assert report.empty == 1 and report.total == 5


def test_identical_audio_is_sent_once_and_batches_bound_memory_and_concurrency(server, tmp_path):
    cuts = [tone_cut(tmp_path, hz) for hz in (300, 400, 500, 600, 700, 800, 900)]
    cuts.append(tone_cut(tmp_path, 300, name="copy-of-300"))
    server.delay = 0.15
    captions, report = make_captioner(server, tmp_path / "c.jsonl", concurrency=3, batch_size=4).caption(cuts)
    assert len(captions) == 8 and captions["copy-of-300"] == captions["tone300"]
    assert len(server.requests) == 7
    assert server.max_in_flight <= 3


def test_audio_url_format_and_a_prompt(server, cuts, tmp_path):
    captioner = make_captioner(server, tmp_path / "c.jsonl", audio_format="audio_url", prompt="Describe the audio.")
    captions, _ = captioner.caption(cuts[:1])
    assert captions == {"tone300": "a steady tone at 300 hz"}
    parts = server.bodies[0]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Describe the audio."}
    assert parts[1]["audio_url"]["url"].startswith("data:audio/wav;base64,")


def test_cache_key_covers_model_prompt_sampling_and_audio(server, tmp_path):
    base = make_captioner(server, tmp_path / "c.jsonl")
    other_model = OpenAICaptioner(OpenAIChatClient(server.url, "another-captioner"), tmp_path / "c.jsonl")
    hotter = OpenAICaptioner(OpenAIChatClient(server.url, "qwen3-omni-captioner", temperature=0.8, top_p=0.95,
                                              max_tokens=1024), tmp_path / "c.jsonl")
    prompted = make_captioner(server, tmp_path / "c.jsonl", prompt="Describe.")
    keys = {base.key("a" * 64), base.key("b" * 64), other_model.key("a" * 64), hotter.key("a" * 64),
            prompted.key("a" * 64)}
    assert len(keys) == 5


def test_caption_cuts_openai_backend_reads_study_settings(server, cuts, tmp_path):
    config = {"backend": "openai", "model": "qwen3-omni-captioner", "temperature": 0.6}
    runtime = {"base_url": server.url, "api_key_env": KEY_ENV, "concurrency": 2, "timeout": 5}
    captions, report = caption_cuts(cuts, config, runtime, cache_dir=tmp_path)
    assert len(captions) == 4
    assert server.bodies[0]["temperature"] == 0.6 and server.bodies[0]["top_p"] == CAPTIONER_SAMPLING["top_p"]
    assert (tmp_path / "llm" / "captions.jsonl").is_file()


# ---------------------------------------------------------------- template and manifest


def test_template_captions_name_every_tag_and_are_deterministic():
    assert join_tags(["rain"]) == "rain" and join_tags(["rain", "dog", "bell"]) == "rain, dog and bell"
    tags = ["rain", "dog", "bell"]
    captions = {template_caption(f"clip-{i}", tags) for i in range(40)}
    assert len(captions) > 1  # the clip id picks among the templates
    for text in captions:
        assert "rain, dog and bell" in text.lower()
    assert template_caption("clip-1", tags) == template_caption("clip-1", tags)
    assert {template_caption(f"c{i}", tags, seed=1) for i in range(5)} != {template_caption(f"c{i}", tags) for i in range(5)}


def test_manifest_and_template_backends_count_clips_without_a_caption():
    cuts = [{"id": "a", "custom": {"caption": "rain falls", "events": ["rain"]}},
            {"id": "b", "custom": {"events": []}},
            {"id": "c"}]
    captions, report = caption_cuts(cuts, {"backend": "manifest", "field": "caption"})
    assert captions == {"a": "rain falls"} and report.missing == 2 and report.total == 3
    captions, report = caption_cuts(cuts, {"backend": "template", "field": "events", "seed": 0})
    assert list(captions) == ["a"] and "rain" in captions["a"] and report.missing == 2


def test_an_unreachable_server_fails_at_once_with_its_address(cuts, tmp_path):
    import socket

    from harness.tagging.llm import LLMRequestError

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIChatClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01)
    started = time.time()
    with pytest.raises(LLMRequestError, match=f"cannot reach http://127.0.0.1:{port}/v1"):
        OpenAICaptioner(client, tmp_path / "c.jsonl").caption(cuts)
    assert time.time() - started < 5


# ---------------------------------------------------------------- tag-guided captions (BLAT)


def tagged(cut: dict, **custom) -> dict:
    return {**cut, "custom": {**(cut.get("custom") or {}), **custom}}


def test_tag_guided_requests_carry_each_clips_labels_and_clips_without_are_counted(server, cuts, tmp_path):
    from harness.tagging.captioners import DEFAULT_GUIDED_PROMPT

    clips = [tagged(cuts[0], labels=["Dog", "Bark"]), tagged(cuts[1], labels="Rain, Thunder"),
             tagged(cuts[2], labels=[]), cuts[3]]
    config = {"backend": "openai", "model": "qwen3-omni-captioner", "field": "labels"}
    runtime = {"base_url": server.url, "api_key_env": KEY_ENV, "concurrency": 1, "timeout": 5}
    captions, report = caption_cuts(clips, config, runtime, cache_dir=tmp_path)
    assert captions == {"tone300": "a steady tone at 300 hz", "tone500": "a steady tone at 500 hz"}
    assert report.missing == 2 and report.captioned == 2 and report.total == 4  # no labels: not sent
    sent = {}
    for body in server.bodies:
        text, audio = body["messages"][0]["content"]
        assert text["type"] == "text" and audio["type"] == "input_audio"
        sent[dominant_hz(base64.b64decode(audio["input_audio"]["data"]))[0]] = text["text"]
    assert sent == {300: DEFAULT_GUIDED_PROMPT.replace("{tags}", "Dog and Bark"),
                    500: DEFAULT_GUIDED_PROMPT.replace("{tags}", "Rain and Thunder")}
    lines = [json.loads(line) for line in (tmp_path / "llm" / "captions.jsonl").read_text().splitlines()]
    assert sorted(line["tags"] for line in lines) == [["Dog", "Bark"], ["Rain", "Thunder"]]

    # The same audio with other labels is another request; the same labels are cached.
    before = len(server.requests)
    clips[0] = tagged(cuts[0], labels=["Cat"])
    again, report = caption_cuts(clips, config, runtime, cache_dir=tmp_path)
    assert report.cache_hits == 1 and report.requested == 1
    assert server.requests[before:] == [300] and "Cat" in server.bodies[-1]["messages"][0]["content"][0]["text"]


def test_tag_guided_cache_key_changes_with_the_tags_and_the_prompt_template(server, tmp_path):
    guided = make_captioner(server, tmp_path / "c.jsonl", guide_field="labels")
    plain = make_captioner(server, tmp_path / "c.jsonl")
    custom = make_captioner(server, tmp_path / "c.jsonl", guide_field="labels", prompt="Tags: {tags}. Describe.")
    audio = "a" * 64
    keys = {plain.key(audio), guided.key(audio, ["dog"]), guided.key(audio, ["dog", "bark"]),
            guided.key(audio, ["bark"]), custom.key(audio, ["dog"])}
    assert len(keys) == 5
    assert guided.key(audio, ["dog"]) == guided.key(audio, ["dog"])
    assert custom.prompt_for(["dog", "bark"]) == "Tags: dog and bark. Describe."
    assert make_captioner(server, tmp_path / "c.jsonl", guide_field="labels", prompt="Describe.").prompt_for(
        ["dog"]) == "Describe.\nLabels: dog."


def test_template_captions_from_the_mini_suite_labels():
    """The tag-guided template mode of the mini suite: captions written from each clip's labels."""
    cuts = [{"id": "a", "custom": {"labels": ["dog_bark", "rain"], "events": ["dog", "rain"]}},
            {"id": "b", "custom": {"labels": []}}]
    captions, report = caption_cuts(cuts, {"backend": "template", "field": "labels", "seed": 0})
    assert list(captions) == ["a"] and "dog bark and rain" in captions["a"].lower() and report.missing == 1
