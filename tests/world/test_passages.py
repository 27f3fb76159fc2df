"""Real passages: parsing, held-out split by article, fetching from a (local) index."""

import json

import pytest

from reverie.errors import DataUnavailable, ReverieError
from reverie.world import passages as P
from tests.world.conftest import tar_gz


def _squad(titles: list[str]) -> dict:
    return {"data": [{"title": t, "paragraphs": [
        {"context": f"{t} was founded in {1900 + i}.", "qas": [
            {"question": f"When was {t} founded?", "answers": [{"text": str(1900 + i), "answer_start": 0}]},
            {"question": "unanswerable", "answers": []}]}]} for i, t in enumerate(titles)]}


def _instruct() -> dict:
    ex = [{"input": "Passage: Ada met Bob in Paris.\nQuestion: Whom did Ada meet?", "target": ["Bob."]},
          {"input": "Passage: Ada met Bob in Paris.\nQuestion: Where? \nAnswer type: Span ", "target": ["Paris."]}]
    return {"examples": ex}


def _archive(path) -> None:
    titles = [f"Article_{i}" for i in range(40)]
    files = {k: _squad(titles if k == "squad" else [f"{k}_{i}" for i in range(3)]) for k in P.SQUAD}
    files |= {k: _instruct() for k in P.INSTRUCT}
    tar_gz(path, {P.TASKS + member: json.dumps(files[name]).encode() for name, member in (P.SQUAD | P.INSTRUCT).items()})


@pytest.fixture()
def index(tmp_path, monkeypatch, serve):
    """A file:// package index holding a small archive shaped like bigbench's."""
    monkeypatch.setattr(P, "SHA256", serve("bigbench", P.ARCHIVE, _archive))
    return tmp_path


def test_fetch_splits_and_parsing(index):
    train, test = P.load("train"), P.load("test")
    assert test and train
    assert {p.id for p in train}.isdisjoint(p.id for p in test)
    assert all(p.source == "squad" and P.held_out(p.title) for p in test)
    assert all(len(p.qas) == 1 for p in test)  # the unanswerable question is dropped
    assert {p.source for p in train} == set(P.SQUAD)
    quoref = P.load("quoref")
    assert len(quoref) == 1 and quoref[0].qas == [("Whom did Ada meet?", ["Bob"]), ("Where?", ["Paris"])]
    assert not (index / "cache" / "data" / P.ARCHIVE).exists()  # the archive is deleted once extracted
    with pytest.raises(ReverieError, match="unknown split"):
        P.load("dev")


def test_fetch_refuses_a_wrong_checksum(index, monkeypatch):
    monkeypatch.setattr(P, "SHA256", "0" * 64)
    with pytest.raises(ReverieError, match="sha256"):
        P.fetch(quiet=True)
    assert not (P.data_dir() / "DONE").exists()


def test_an_index_without_the_archive_is_named_and_a_local_copy_is_used(index, monkeypatch):
    simple = index / "simple" / "bigbench"
    archive = (simple / P.ARCHIVE).read_bytes()
    (simple / "index.html").write_text('<a href="../files/bigbench-0.0.1.tar.gz#sha256=00">bigbench-0.0.1.tar.gz</a>')
    with pytest.raises(DataUnavailable, match=r"does not offer bigbench-1\.0\.0\.tar\.gz \(it lists: bigbench-0\.0\.1\.tar\.gz\)"):
        P.fetch(quiet=True)
    assert not (P.data_dir() / "DONE").exists()
    monkeypatch.setenv("PIP_INDEX_URL", (index / "nowhere").as_uri())
    with pytest.raises(DataUnavailable, match="cannot reach"):
        P.fetch(quiet=True)
    (P.data_dir().parent / P.ARCHIVE).write_bytes(archive)  # the copy the message points at
    assert P.load("test")


def test_jsonl_round_trip(tmp_path):
    ps = [P.Passage("a1", "squad", "T", "Some text.", [("Q?", ["A"])])]
    P.save_jsonl(ps, tmp_path / "p.jsonl")
    assert P.load_jsonl(tmp_path / "p.jsonl") == ps
    with pytest.raises(ReverieError, match="not found"):
        P.load_jsonl(tmp_path / "missing.jsonl")
    import gzip

    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as f:
        f.write((tmp_path / "p.jsonl").read_text())
    assert P.load_jsonl(tmp_path / "p.jsonl.gz") == ps
    for name, body in (("junk.jsonl", b"not json\n"), ("bytes.jsonl", b"\xff\xfe\n"), ("rows.jsonl", b'{"id": 1}\n'),
                       ("list.jsonl", b"[1, 2]\n")):
        (tmp_path / name).write_bytes(body)
        with pytest.raises(ReverieError, match=f"passages file .*{name}"):
            P.load_jsonl(tmp_path / name)
