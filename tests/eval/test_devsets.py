"""The hand-written dev sets: their structure, that every answer is in its text, and the
answer matcher."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from reverie.errors import ReverieError
from reverie.eval import devsets as D
from reverie.eval.devsets import Question, correct, normalise

MINIMUM = {"bios": 44, "notes": 24, "wiki": 32, "general": 40}


def raw(name: str) -> dict:
    return json.loads((D.ASSETS / f"{name}.json").read_text(encoding="utf-8"))


def fetched() -> bool:
    try:
        D._articles()
    except ReverieError:
        return False
    return True


needs_articles = pytest.mark.skipif(
    not fetched(), reason="Wikipedia articles not fetched: run `reverie data fetch`"
)


@pytest.mark.parametrize("name", D.NAMES)
def test_files_structure(name):
    f = raw(name)
    assert f["written_by"] == "hand" and f["description"]
    items = f["items"]
    assert len(items) >= MINIMUM[name]
    ids = [i["id"] for i in items]
    assert len(set(ids)) == len(ids)
    splits = Counter(i["split"] for i in items)
    assert set(splits) == {"dev", "test"} and abs(splits["dev"] - splits["test"]) <= 1
    questions = items if name == "general" else [q for i in items for q in i["questions"]]
    for q in questions:
        assert q["q"].strip() and q["a"].strip() and isinstance(q["alts"], list)
        assert q["q"].endswith("?")


def test_bios():
    items = raw("bios")["items"]
    for it in items:
        assert len(it["questions"]) == 6, it["id"]
        words = len(it["text"].split())
        assert 60 <= words <= 130, (it["id"], words)
        for q in it["questions"]:
            assert correct(it["text"], Question(q["q"], q["a"], tuple(q["alts"]))), (it["id"], q)
        up = it["update"]
        assert up["q"] and up["a"] and up["old"] and up["text"], it["id"]
        assert correct(up["text"], Question(up["q"], up["a"], tuple(up["alts"]))), it["id"]
        assert correct(it["text"], Question(up["q"], up["old"])), it["id"]
        assert normalise(up["a"]) != normalise(up["old"]), it["id"]


def test_notes():
    for it in raw("notes")["items"]:
        assert 2 <= len(it["questions"]) <= 3, it["id"]
        for q in it["questions"]:
            assert correct(it["text"], Question(q["q"], q["a"], tuple(q["alts"]))), (it["id"], q)


def test_no_probe_templates():
    """The questions are not the learner's own probe forms."""
    probes = ("what do you know about", "complete from what you read", "summarise what you read",
              "summarize what you read")
    for name in D.NAMES:
        f = raw(name)
        if name == "general":
            qs = [i["q"] for i in f["items"]]
        else:
            qs = [q["q"] for i in f["items"] for q in i["questions"]] + \
                 [i["update"]["q"] for i in f["items"] if "update" in i]
        for q in qs:
            assert not q.lower().startswith(probes) and not q.lower().startswith("when did"), q


@pytest.mark.parametrize("name", ["bios", "notes", "general"])
def test_load(name):
    dev, test, everything = (D.load(name, s) for s in ("dev", "test", "all"))
    assert len(dev) + len(test) == len(everything) >= MINIMUM[name]
    assert {i.split for i in dev} == {"dev"} and {i.split for i in test} == {"test"}
    assert all(i.set == name for i in everything)
    if name == "bios":
        it = everything[0]
        assert it.update is not None and it.update_text and it.update_old and len(it.questions) == 6
    if name == "general":
        assert all(i.text == "" and len(i.questions) == 1 for i in everything)


def test_load_rejects_unknown():
    with pytest.raises(ReverieError, match="unknown dev set"):
        D.load("poems")
    with pytest.raises(ReverieError, match="unknown split"):
        D.load("bios", "train")


def test_wiki_not_fetched(monkeypatch, tmp_path):
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path))
    with pytest.raises(ReverieError, match="reverie data fetch"):
        D.load("wiki")


def test_wiki_hash_mismatch():
    articles = {"Tiny": "First paragraph.\n\nSecond paragraph."}
    good = D.hashlib.sha256(b"Second paragraph.").hexdigest()
    assert D.paragraph(articles, "Tiny", 1, good) == "Second paragraph."
    with pytest.raises(ReverieError, match="sha256"):
        D.paragraph(articles, "Tiny", 0, good)
    with pytest.raises(ReverieError, match="sha256"):
        D.paragraph(articles, "Tiny", 7, good)


@needs_articles
def test_wiki_answers_verbatim():
    items = D.load("wiki", "all")
    assert len(items) >= MINIMUM["wiki"] and len({i.title for i in items}) >= 15
    for it in items:
        assert len(it.questions) == 3, it.id
        for q in it.questions:
            assert q.a in it.text, (it.id, q.a)


def test_correct():
    q = Question("What is Sigrún's date of birth?", "4 March 1988", ("March 4, 1988",))
    assert correct("She was born on 4 march 1988.", q)
    assert correct("March 4th... no: March 4, 1988!", q)
    assert not correct("She was born in 1988.", q)
    assert correct("They work at OSSUR now", Question("?", "Össur"))
    assert correct("It eats about 250000 termites.", Question("?", "250,000"))
    assert not correct("nineteen", Question("?", "nine"))
    assert correct("The password is orchard!42", Question("?", "Orchard!42"))
    assert not correct("", Question("?", "Paris"))
