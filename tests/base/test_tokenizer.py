from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.base.model import decode_input


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_any_string_roundtrips(tokenizer, s):
    ids = tokenizer.encode(s, add_special_tokens=False)
    assert tokenizer.decode(ids) == s


@settings(max_examples=40, deadline=None)
@given(st.binary())
def test_any_bytes_encode(tokenizer, b):
    s = decode_input(b)
    assert isinstance(s, str)
    tokenizer.encode(s, add_special_tokens=False)
