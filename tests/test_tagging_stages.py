"""A study's tagging block end to end: template captions of the mini suite, an OpenAI-compatible
parser server, synonym merging, and tag systems, each a cached node of the job graph."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.dispatch import Layout, run_graph
from harness.graph import Graph, expand
from harness.study import load_study

ROOT = Path(__file__).resolve().parent.parent

STUDY = """
include: {base}
name: tagging-stages
tagging:
  captioner: template
  parser: {{backend: openai, model: tagger, base_url: "{url}", concurrency: {concurrency}, max_tags: 6, min_tags: 1}}
  merge_synonyms: {{threshold: 0.75}}
  sizes: [12, 24]
pretrain: {{encoder: transformer, objectives: [mtc]}}
probes: {{tasks: [mini/env_event]}}
"""


class TaggerServer:
    """Answers every caption with its words of three letters or more as labels."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                words = re.findall(r"[a-z]{3,}", body["messages"][-1]["content"].lower())
                labels = list(dict.fromkeys(w for w in words if w not in {"the", "and", "can", "with", "you"}))
                with outer.lock:
                    outer.count += 1
                data = json.dumps({"choices": [{"message": {"content": json.dumps({"labels": labels})}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def tagging_graph(tmp_path: Path, url: str, concurrency: int) -> Graph:
    path = tmp_path / f"study-{concurrency}.yaml"
    path.write_text(STUDY.format(base=ROOT / "studies" / "base" / "mini.yaml", url=url, concurrency=concurrency))
    graph = Graph()
    for node in expand(load_study(path).config):
        if node.stage == "tagsystem":
            graph.add(node)
    return graph


@pytest.mark.slow
def test_tagging_block_runs_as_cached_nodes(tmp_path, harness_env):
    server = TaggerServer()
    layout = Layout(out=tmp_path / "runs" / "tagging-stages", cache=Path(harness_env["HARNESS_HOME"]))
    graph = tagging_graph(tmp_path, server.url, concurrency=8)
    assert [n.stage for n in graph] == ["dataset", "captions", "tags", "tagsystem", "tagsystem"]
    summary = run_graph(graph, layout, executor_kind="debug", progress=False)
    assert summary.ok, summary
    paths = {n.stage: layout.store_for(n.stage).path(n.stage, n.key) for n in graph}

    captions = [json.loads(l) for l in (paths["captions"] / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == 1200 and server.count == len({c["caption"] for c in captions})
    report = json.loads((paths["tags"] / "parse_report.json").read_text())
    assert report["total"] == 1200 and report["accepted"] == 1200 and report["request_errors"] == 0
    tags = [json.loads(l)["tags"] for l in (paths["tags"] / "tags.jsonl").read_text().splitlines()]
    assert all(1 <= len(t) <= 6 for t in tags)

    for node in graph.by_stage()["tagsystem"]:
        folder = layout.store.path("tagsystem", node.key)
        k = node.config["size"]
        labels = json.loads((folder / f"label_{k}.json").read_text())
        assert list(labels) == [str(i) for i in range(k)]
        record = json.loads((folder / "_done.json").read_text())
        assert (folder / "merges.csv").read_text().startswith("merged,kept,similarity,df")
        merges = (folder / "merges.csv").read_text().splitlines()[1:]
        assert record["outputs"]["merged_tags"] == len(merges) >= 1  # ("heard" -> "hear" at 0.84)
        assert not {m.split(",")[0] for m in merges} & set(labels.values())  # merged tags are gone

    # Another concurrency is a runtime setting: every node is already done, nothing is asked again.
    before = server.count
    again = run_graph(tagging_graph(tmp_path, server.url, concurrency=2), layout, executor_kind="debug",
                      progress=False)
    assert not again.done and len(again.skipped) == 5 and server.count == before
    server.httpd.shutdown()
