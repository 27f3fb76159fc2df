"""Wikipedia articles: markup to prose, which pages are kept, the held-out split, and
fetching gensim's archive from a (local) index."""

import bz2
import io

import pytest

from reverie.errors import DataUnavailable, ReverieError
from reverie.world import passages as P
from reverie.world import wiki as W
from tests.world.conftest import tar_gz

NS = "http://www.mediawiki.org/xml/export-0.10/"
PROSE = ("{name} is a made-up town on a river, founded by weavers who came down from the hills "
         "and built their looms beside the water, where the current was strong enough to turn the wheels "
         "of the mills all year.")


def _page(title: str, text: str, ns: int = 0, redirect: bool = False) -> str:
    r = f'<redirect title="{title}x" />' if redirect else ""
    return (f"<page><title>{title}</title><ns>{ns}</ns><id>1</id>{r}"
            f"<revision><id>2</id><text xml:space=\"preserve\">{text}</text></revision></page>")


def _article(name: str) -> str:
    return (f"'''{PROSE.format(name=name)}'''&lt;ref&gt;A source, p. 3.&lt;/ref&gt;\n\n"
            f"== History ==\n[[File:Loom.jpg|thumb|250px|A loom of {name}, long gone]]\n"
            f"{{{{Infobox town|name={name}}}}}\n"
            f"In the [[winter|cold season]] the river froze and {PROSE.format(name='the town')}\n\n"
            f"* a list item\n\n[[Category:Towns]]")


def _dump(names: list[str]) -> bytes:
    pages = [_page(n, _article(n)) for n in names]
    pages += [_page("Old name", "#REDIRECT [[Town_0]]", redirect=True),
              _page("Talk:Town_0", _article("Talk"), ns=1),
              _page("Town (disambiguation)", _article("Town")),
              _page("Stub", "Too short to keep.")]
    xml = f'<mediawiki xmlns="{NS}"><siteinfo><sitename>W</sitename></siteinfo>{"".join(pages)}</mediawiki>'
    return bz2.compress(xml.encode())


def test_markup_becomes_prose_and_only_articles_are_kept():
    arts = list(W.parse(io.BytesIO(bz2.decompress(_dump(["Town_0", "Town_1"])))))
    assert [a.title for a in arts] == ["Town_0", "Town_1"]
    a = arts[0]
    paras = a.text.split("\n\n")
    assert paras == [PROSE.format(name="Town_0"), f"In the cold season the river froze and {PROSE.format(name='the town')}"]
    assert a.source == "wikipedia" and a.qas == [] and a.id == P.passage_id(a.text)
    assert W.first_sentence(a.text) == PROSE.format(name="Town_0")


@pytest.fixture()
def index(tmp_path, monkeypatch, serve):
    """A file:// package index holding a small archive shaped like gensim's."""

    write = lambda path: tar_gz(path, {W.DUMP: _dump([f"Town_{i}" for i in range(30)])})  # noqa: E731
    monkeypatch.setattr(W, "SHA256", serve("gensim", W.ARCHIVE, write))
    return tmp_path


def test_fetch_keeps_prose_and_splits_by_title(index):
    train, test = W.load("train"), W.load("test")
    assert len(train) + len(test) == len(W.load("all")) == 30 and test and train
    assert all(P.held_out(a.title) for a in test) and not any(P.held_out(a.title) for a in train)
    assert not (index / "cache" / "data" / W.ARCHIVE).exists()  # the archive is deleted once read
    with pytest.raises(ReverieError, match="unknown split"):
        W.load("dev")


def test_a_wrong_checksum_or_a_missing_archive_is_one_line_and_nothing_is_kept(index, monkeypatch):
    monkeypatch.setattr(W, "SHA256", "0" * 64)
    with pytest.raises(ReverieError, match="sha256"):
        W.fetch(quiet=True)
    (index / "simple" / "gensim" / "index.html").write_text('<a href="gensim-4.3.0.tar.gz">x</a>')
    with pytest.raises(DataUnavailable, match="does not offer gensim-4.4.0.tar.gz .it lists: gensim-4.3.0.tar.gz"):
        W.fetch(quiet=True)
    assert not (W.data_dir() / "articles.jsonl").exists()


def test_a_damaged_cache_is_named(index):
    W.fetch(quiet=True)
    path = W.data_dir() / "articles.jsonl"
    path.write_bytes(path.read_bytes()[:-40])  # cut off mid-line
    with pytest.raises(ReverieError, match="articles.jsonl is damaged .* delete it and it is fetched again"):
        W.load("test")
    path.unlink()
    assert len(W.load("all")) == 30


def test_data_fetch_keeps_the_articles_when_the_passages_cannot_be_had(index):
    from typer.testing import CliRunner

    from reverie.cli import app

    r = CliRunner().invoke(app, ["data", "fetch", "--json"])  # this index holds no bigbench
    assert r.exit_code == 1
    assert '"wiki_test_articles": ' in r.stdout and '"passages": "unavailable"' in r.stdout
    assert "error:" in r.stderr and "bigbench-1.0.0.tar.gz" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (W.data_dir() / "articles.jsonl").is_file()
