"""The free-text prober: what it asks of a user's text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.sleep.probe import (
    PROBERS,
    TextProber,
    anchors,
    named,
    resolved,
    sentences,
    subject,
    wh_word,
)

NOTE = "The staging server is called Bluefin. It listens on port 8443 and was set up by Tomasz Kowal in March 2024."
BIO = ("Sigrún Þórsdóttir was born on 4 March 1988 in Akureyri. She studied industrial design in Reykjavík. "
       "I'm told she now works for Marel.")


def test_sentences_and_named_things() -> None:
    assert sentences(NOTE) == ["The staging server is called Bluefin.",
                               "It listens on port 8443 and was set up by Tomasz Kowal in March 2024."]
    assert named(NOTE) == ["Bluefin", "8443", "Tomasz Kowal", "March 2024"]
    assert "4 March 1988" in named(BIO) and "Sigrún Þórsdóttir" in named(BIO)
    # An abbreviation's or an initial's period does not end a sentence.
    assert sentences("Agassi was World No. 1 in 1995. John F. Kennedy served in the U.S. Navy. Dr. Ruiz agreed.") == [
        "Agassi was World No. 1 in 1995.", "John F. Kennedy served in the U.S. Navy.", "Dr. Ruiz agreed."]


def test_the_subject_is_the_person_a_biography_is_about() -> None:
    assert subject(BIO) == "Sigrún Þórsdóttir"
    assert resolved("She studied industrial design in Reykjavík.", "Sigrún Þórsdóttir").startswith("Sigrún Þórsdóttir studied")
    assert resolved("I grew up in Kumasi, where I was born.", "Kwame Mensah") == "Kwame Mensah grew up in Kumasi, where Kwame Mensah was born."


def test_question_words_follow_what_the_text_states() -> None:
    s = "Sigrún Þórsdóttir was born on 4 March 1988 in Akureyri."
    found = dict((a, o) for o, a in anchors(s))
    assert wh_word(s, found["4 March 1988"], "4 March 1988") == "when"
    assert wh_word(s, found["Akureyri"], "Akureyri") == "where"
    assert wh_word("It listens on port 8443.", 16, "8443") == "what number"


def test_facts_are_answered_with_the_texts_own_sentences_and_keys_are_the_texts_own() -> None:
    p = TextProber()
    facts = p.facts(BIO)
    assert any(q.startswith("Sigrún Þórsdóttir was born when") for q, _, _ in facts)
    p.with_fronted = True
    assert ("When was Sigrún Þórsdóttir born in Akureyri?", "") in [(q, a) for q, a, _ in p.facts(BIO)]
    p.with_fronted = False
    recital = [(q, a) for q, a, k in facts if k.startswith("recite|")]
    assert [q for q, _ in recital] == ["What do you know about Sigrún Þórsdóttir?", p.summary]
    assert all(a.startswith("Sigrún Þórsdóttir was born") and "Sigrún Þórsdóttir studied" in a for _, a in recital)
    for q, a, k in facts:
        assert a and (q.endswith("?") or q.endswith("...") or k.startswith("recite|"))
        assert k.startswith("fact|") or k.startswith("recite|")
    other = {k for _, _, k in p.facts(NOTE)}
    assert not other & {k for _, _, k in facts}  # two texts never share a fact key
    qs = p.questions(BIO)
    assert qs[0] == ("What do you know about Sigrún Þórsdóttir?", "about|sigrún þórsdóttir")
    assert qs[-1][0] == p.summary and qs[-1][1].startswith("summary|")
    assert "text" in PROBERS


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_any_text_gets_probes_without_failing(text: str) -> None:
    p = TextProber()
    for q, a, k in p.facts(text):
        assert q and a and k
    for q, k in p.questions(text):
        assert q and k
