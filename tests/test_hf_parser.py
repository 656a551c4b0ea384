"""The ``transformers`` caption parser on a tiny causal LM that the tests create and train.

The model (a 2-layer Llama over a character vocabulary) is trained for about a second to
answer two captions with their tag JSON, then saved with ``save_pretrained``. Loading it
back offline, formatting the chat template, left-padded batch generation, decoding,
normalisation, the parse report and the resumable cache all run for real.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.tagging.hf import TransformersChat, folder_fingerprint  # noqa: E402
from harness.tagging.llm import LLMParser  # noqa: E402
from harness.tagging.parsers import parse_captions  # noqa: E402

PROMPT = "Tags:"
PAIRS = {
    "dog barks in a park": ["dog", "bark", "park"],
    "a car horn on a street": ["car", "horn", "street"],
}
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for c in string.printable[:95]:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, intermediate_size=128, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    rows = []
    for caption, labels in PAIRS.items():
        prompt = tokenizer.apply_chat_template([{"role": "system", "content": PROMPT},
                                                {"role": "user", "content": caption}],
                                               tokenize=False, add_generation_prompt=True)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t = tokenizer(json.dumps({"labels": labels}), add_special_tokens=False)["input_ids"] + [2]
        rows.append((p, t))
    length = max(len(p) + len(t) for p, t in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full_like(ids, -100)
    for i, (p, t) in enumerate(rows):
        ids[i, : len(p) + len(t)] = torch.tensor(p + t)
        mask[i, : len(p) + len(t)] = 1
        targets[i, len(p) : len(p) + len(t)] = torch.tensor(t)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(400):
        loss = model(input_ids=ids, attention_mask=mask, labels=targets).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.005:
            break
    folder = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def chat(folder: Path, **kw) -> TransformersChat:
    return TransformersChat(folder, temperature=0, max_tokens=60, **kw)


def test_local_model_parses_captions_through_the_shared_normaliser(tiny_model, tmp_path):
    parser = LLMParser(chat(tiny_model), tmp_path / "cache.jsonl", prompt=PROMPT)
    labels, report = parser.parse_many(list(PAIRS))
    assert labels == list(PAIRS.values())
    assert report.accepted == 2 and report.requested == 2 and report.rejected == 0
    record = json.loads((tmp_path / "cache.jsonl").read_text().splitlines()[0])
    assert record["model"].startswith(tiny_model.name + "@") and json.loads(record["raw"])["labels"]


def test_left_padded_batches_answer_like_one_prompt_at_a_time(tiny_model):
    messages = [[{"role": "system", "content": PROMPT}, {"role": "user", "content": c}] for c in PAIRS]
    batched = chat(tiny_model, batch_size=8).complete_batch(messages)
    single = [chat(tiny_model).complete(m) for m in messages]
    assert batched == single and json.loads(batched[1]) == {"labels": PAIRS["a car horn on a street"]}


def test_rerun_resumes_from_the_cache_without_generating(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache.jsonl"
    LLMParser(chat(tiny_model), cache, prompt=PROMPT).parse_many(list(PAIRS)[:1])
    backend = chat(tiny_model)
    calls = []
    real = backend.complete_batch
    monkeypatch.setattr(backend, "complete_batch", lambda batch: calls.append(len(batch)) or real(batch))
    labels, report = LLMParser(backend, cache, prompt=PROMPT).parse_many(list(PAIRS))
    assert labels == list(PAIRS.values())
    assert calls == [1] and report.cache_hits == 1 and report.requested == 1


def test_a_failing_batch_is_counted_not_raised(tiny_model, tmp_path, monkeypatch):
    backend = chat(tiny_model)

    def boom(batch):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(backend, "complete_batch", boom)
    labels, report = LLMParser(backend, tmp_path / "c.jsonl", prompt=PROMPT).parse_many(list(PAIRS))
    assert labels == [[], []] and report.request_errors == 2 and report.errors == {"RuntimeError": 2}
    assert not (tmp_path / "c.jsonl").exists()  # failures are not cached: a rerun asks again


def test_cache_key_follows_model_content_not_its_path(tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(tiny_model, copy)
    assert folder_fingerprint(copy) == folder_fingerprint(tiny_model)
    assert LLMParser(chat(copy), tmp_path / "c").key("x") != LLMParser(chat(copy, seed=1), tmp_path / "c").key("x")
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("\n", " \n", 1))
    assert folder_fingerprint(copy) != folder_fingerprint(tiny_model)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        TransformersChat(tmp_path / "nope")


def test_parse_captions_dispatches_on_the_backend(tiny_model, tmp_path):
    config = {"backend": "transformers", "prompt": PROMPT, "temperature": 0, "max_tokens": 60, "max_tags": 2}
    labels, report = parse_captions(list(PAIRS), config, {"model": str(tiny_model)}, cache_path=tmp_path / "c.jsonl")
    assert labels == [["dog", "bark"], ["car", "horn"]]  # max_tags caps the label list
    assert report["accepted"] == 2 and report["problems"] == {"too_many": 2}
    rules, _ = parse_captions(["A dog barks in a park"], {"backend": "rules"})
    assert rules == [["dog", "bark", "park"]]


def test_cli_parse_with_a_local_model(tiny_model, tmp_path):
    csv = tmp_path / "captions.csv"
    csv.write_text("audiocap_id,caption\n1,dog barks in a park\n2,a car horn on a street\n")
    out = tmp_path / "tags.jsonl"
    proc = subprocess.run([sys.executable, "-m", "harness", "tags", "parse", "--captions", str(csv), "--parser",
                           "transformers", "--model", str(tiny_model), "--temperature", "0", "--prompt", PROMPT,
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"id": "1", "tags": ["dog", "bark", "park"]}, {"id": "2", "tags": ["car", "horn", "street"]}]
    assert "parse captions: model loaded in" in proc.stderr  # said before the first batch runs
    assert "parse report: 2 captions: 2 accepted" in proc.stderr
    assert json.loads((tmp_path / "parse_report.json").read_text())["accepted"] == 2
    cache = [json.loads(line) for line in (tmp_path / "tags.jsonl.cache.jsonl").read_text().splitlines()]
    assert {line["parser"] for line in cache} == {"transformers-1"}
    missing = subprocess.run([sys.executable, "-m", "harness", "tags", "parse", "--captions", str(csv), "--parser",
                              "transformers", "--model", str(tmp_path / "none"), "--out", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "model folder not found" in missing.stderr
    assert "Traceback" not in missing.stderr


# ---------------------------------------------------------------- a backend that cannot load


def parse_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "tags", "parse", *args], capture_output=True, text=True,
                          timeout=300)


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def captions_csv(tmp_path) -> Path:
    csv = tmp_path / "captions.csv"
    csv.write_text("audiocap_id,caption\n1,dog barks in a park\n2,a car horn on a street\n")
    return csv


def test_a_model_that_cannot_load_fails_once_before_any_request(tiny_model, tmp_path, captions_csv):
    """A folder whose tokenizer cannot load: one line with the real cause, exit 2, nothing
    written, nothing cached (the load is tried once, not once per batch)."""
    import shutil

    broken = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (broken / name).unlink(missing_ok=True)
    out = tmp_path / "tags.jsonl"
    proc = parse_cli("--captions", str(captions_csv), "--parser", "transformers", "--model", str(broken),
                     "--batch-size", "1", "--out", str(out))
    assert proc.returncode == 2
    (line,) = errors(proc.stderr)
    assert line.startswith(f"error: the transformers parser cannot load {broken}: ")
    assert not out.exists() and not (tmp_path / "tags.jsonl.cache.jsonl").exists()


def test_a_gguf_folder_named_without_its_file_says_which_file(tmp_path, captions_csv):
    folder = tmp_path / "smol"
    folder.mkdir()
    (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")  # never read: the check is the folder's
    proc = parse_cli("--captions", str(captions_csv), "--parser", "transformers", "--model", str(folder),
                     "--out", str(tmp_path / "t.jsonl"))
    assert proc.returncode == 2
    assert errors(proc.stderr) == [f"error: {folder}: a GGUF model folder (no config.json): name its file, "
                                   "--gguf-file SmolLM2-135M-Instruct.Q4_1.gguf (gguf_file: in a study)"]


def test_gguf_without_the_gguf_package_names_the_fix(tmp_path, captions_csv, monkeypatch, capsys):
    from harness.cli import main
    from harness.tagging import hf

    real = hf.importlib.util.find_spec
    monkeypatch.setattr(hf.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gguf", "accelerate") else real(name, *a))
    folder = tmp_path / "smol"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    out = tmp_path / "t.jsonl"
    code = main(["tags", "parse", "--captions", str(captions_csv), "--parser", "transformers", "--model",
                 str(folder), "--gguf-file", "m.gguf", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert errors(capsys.readouterr().err) == [
        "error: loading the GGUF model m.gguf needs gguf and accelerate: pip install -e '.[gguf]' "
        "(the gguf and accelerate packages)"]


def test_gguf_file_may_be_given_as_a_path(tmp_path, monkeypatch):
    from harness.tagging import hf

    real = hf.importlib.util.find_spec
    monkeypatch.setattr(hf.importlib.util, "find_spec",
                        lambda name, *a: object() if name in ("gguf", "accelerate") else real(name, *a))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    for given in ("m.gguf", "model/m.gguf", str(folder / "m.gguf")):
        assert TransformersChat("model", gguf_file=given).gguf_file == "m.gguf"
    (tmp_path / "elsewhere.gguf").write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match="is not inside the model folder"):
        TransformersChat("model", gguf_file="elsewhere.gguf")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        TransformersChat("model", gguf_file="model/none.gguf")


def test_every_batch_failing_exits_non_zero_with_the_cause(tiny_model, tmp_path, captions_csv, monkeypatch, capsys):
    from harness.cli import main

    def boom(self, batch):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(TransformersChat, "complete_batch", boom)
    out = tmp_path / "tags.jsonl"
    code = main(["tags", "parse", "--captions", str(captions_csv), "--parser", "transformers", "--model",
                 str(tiny_model), "--prompt", PROMPT, "--out", str(out)])
    assert code == 1 and not out.exists()
    (line,) = errors(capsys.readouterr().err)
    assert "every one of the 2 requests failed (RuntimeError: CUDA out of memory (simulated))" in line
    assert json.loads((tmp_path / "parse_report.json").read_text())["errors"] == {"RuntimeError": 2}


def test_answers_cut_at_max_tokens_are_counted_truncated(tiny_model, tmp_path, captions_csv):
    out = tmp_path / "tags.jsonl"
    proc = parse_cli("--captions", str(captions_csv), "--parser", "transformers", "--model", str(tiny_model),
                     "--temperature", "0", "--prompt", PROMPT, "--max-tokens", "6", "--threads", "1",
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "parse_report.json").read_text())
    assert report["problems"] == {"truncated": 2} and report["rejected"] == 2
    assert "2 rejected (truncated 2)" in proc.stderr
    cache = [json.loads(line) for line in (tmp_path / "tags.jsonl.cache.jsonl").read_text().splitlines()]
    assert all(line["truncated"] for line in cache)


def test_tags_build_of_a_file_without_tags_is_one_line(tmp_path):
    tags = tmp_path / "tags.jsonl"
    tags.write_text('{"id": "1", "tags": []}\n{"id": "2", "tags": []}\n')
    out = tmp_path / "uts"
    proc = subprocess.run([sys.executable, "-m", "harness", "tags", "build", "--tags", str(tags), "--sizes", "50",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    (line,) = errors(proc.stderr)
    assert line.startswith(f"error: {tags}: no clip has a tag (2 clips, every tag list empty)")
    assert not out.exists()  # no empty folder left behind
