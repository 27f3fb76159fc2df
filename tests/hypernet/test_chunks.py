"""Long documents: chunking, rank concatenation and SVD re-compression."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.base.model import BaseModel
from reverie.hypernet.chunks import combine, concat_ranks, split_chunks, svd_ranks
from reverie.hypernet.injectors import HyperInjector
from reverie.hypernet.qa import stack_adapters
from tests.hypernet.test_hypernet import _random_hyper

WORDS = lambda s: len(s.split())  # noqa: E731 - a stand-in token count


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="abc ", min_size=1, max_size=40).map(lambda s: s.strip() + "."), min_size=1, max_size=30),
       st.integers(3, 12))
def test_chunks_fit_and_keep_every_word(sentences, limit):
    text = " ".join(sentences)
    chunks = split_chunks(text, WORDS, limit)
    assert all(WORDS(c) <= limit for c in chunks)
    assert " ".join(chunks).split() == text.split()


def _parts(n: int, r: int = 3, L: int = 2, d_in: int = 10, d_out: int = 7):
    g = torch.Generator().manual_seed(0)
    return [{"t": (torch.randn(L, r, d_in, generator=g), torch.randn(L, d_out, r, generator=g))} for _ in range(n)]


def test_svd_is_the_best_fixed_rank_approximation():
    parts = _parts(4)
    dense = sum(B @ A for p in parts for A, B in p.values())  # (L, d_out, d_in)
    full = svd_ranks(parts, 12)["t"]
    torch.testing.assert_close(full[1] @ full[0], dense, atol=1e-4, rtol=1e-4)  # rank 12 = exact
    A, B = svd_ranks(parts, 3)["t"]
    assert A.shape == (2, 3, 10) and B.shape == (2, 7, 3)
    U, S, Vh = torch.linalg.svd(dense)
    best = (U[..., :3] * S[:, None, :3]) @ Vh[:, :3]
    torch.testing.assert_close(B @ A, best, atol=1e-4, rtol=1e-4)
    cat = concat_ranks(parts, 3)["t"]
    torch.testing.assert_close(cat[1] @ cat[0], dense, atol=1e-4, rtol=1e-4)


def test_long_document_is_chunked_and_combined(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    h = _random_hyper(bm)
    bio = "Ada Lovelace was born in Lyon. She studied Physics at Delta University. She works for Acme in Oslo. "
    long = bio * 20
    for how, rank in (("concat", None), ("svd", 4 + 4)):
        inj = HyperInjector(bm, h, combine=how)
        chunks = inj.chunks(long)
        assert len(chunks) > 1 and all(inj.n_tokens(c) <= inj.limit for c in chunks)
        ad = inj.inject(long)
        assert ad.meta["chunks"] == len(chunks) and ad.scale == 1.0
        assert ad.rank == (len(chunks) * 4 + 4 if rank is None else rank)  # doc ranks + the bias once
    short = HyperInjector(bm, h).inject(bio)
    assert "chunks" not in short.meta and short.rank == 8
    # One batch may mix a short document's adapter with a long one's (ranks padded, scales folded).
    mixed = stack_adapters([short, ad])
    A, B = mixed["mlp.down_proj"]
    assert A.shape[1:3] == (bm.n_layers, 8) and B.shape[-1] == 8
    d0 = short.scale * short.factors["mlp.down_proj"][1] @ short.factors["mlp.down_proj"][0]
    torch.testing.assert_close(B[0] @ A[0], d0)


def test_combine_keeps_the_bias_once(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    inj = HyperInjector(bm, _random_hyper(bm))
    ads = inj.inject_many(["Ada was born in Lyon.", "Bob works for Acme."])
    both = combine(ads, "concat", 4)
    docs = [a.parts()[0]["mlp.down_proj"] for a in ads]
    bias = ads[0].parts()[1]["mlp.down_proj"]
    want = sum(B @ A for A, B in docs) + bias[1] @ bias[0]
    A, B = both.factors["mlp.down_proj"]
    torch.testing.assert_close(B @ A, want, atol=1e-5, rtol=1e-5)
