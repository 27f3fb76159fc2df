import torch

from reverie.base.model import BaseModel
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.injectors import DistillInjector, HyperInjector
from reverie.hypernet.lora import applied, merge
from reverie.hypernet.model import HyperNetwork
from reverie.hypernet.reading import read_docs
from reverie.hypernet.store import build_config, load_hypernet, save_hypernet

DOC = "Ada Lovelace was born in London. She works for Babbage and Sons."


def _logits(bm, text="Question: Where was Ada Lovelace born?\nAnswer:"):
    with torch.no_grad():
        return bm.model(torch.tensor([bm.encode(text)])).logits


def _random_hyper(bm, seed=0):
    torch.manual_seed(seed)
    h = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    with torch.no_grad():
        h.scale.normal_()
        for b in h.bias_b.values():
            b.normal_(std=0.1)
    return h


def test_fresh_hypernet_changes_nothing(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    h = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    hidden, pad, ins = read_docs(bm, [DOC], h.key_targets)
    f, _ = h(hidden, pad, ins)
    before = _logits(bm)
    with applied(bm.model, {t: (A[0], B[0]) for t, (A, B) in f.items()}, 2.0):
        after = _logits(bm)
    assert torch.equal(before, after)
    assert all(B.abs().max() == 0 for _, B in f.values())


def test_hooks_equal_merged_weights_and_merge_is_reversible(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    ad = HyperInjector(bm, _random_hyper(bm)).inject(DOC)
    assert ad.rank == 4 + 4  # document rank + bias rank
    w0 = {n: p.clone() for n, p in bm.model.named_parameters()}
    with applied(bm.model, ad.factors, ad.scale):
        hooked = _logits(bm)
    merge(bm.model, ad.factors, ad.scale)
    merged = _logits(bm)
    assert not torch.allclose(hooked, _logits_plain(bm, w0), atol=1e-6)
    torch.testing.assert_close(hooked, merged, atol=1e-4, rtol=1e-4)
    merge(bm.model, ad.factors, ad.scale, sign=-1)
    for n, p in bm.model.named_parameters():
        torch.testing.assert_close(p, w0[n], atol=1e-6, rtol=0)


def test_shared_adapters_nest_and_agree_with_per_row_ones(tiny_llama_dir):
    # One adapter for every row shadows each target's forward; a second one applied inside
    # the block (the module already shadowed) goes through a hook; both add up, and leaving
    # the blocks restores the modules exactly.
    bm = BaseModel.load(tiny_llama_dir)
    inj = HyperInjector(bm, _random_hyper(bm))
    one, two = inj.inject(DOC), inj.inject("Grace Hopper was born in New York City.")
    plain = _logits(bm)
    with applied(bm.model, one.factors, one.scale):
        with applied(bm.model, two.factors, two.scale):
            both = _logits(bm)
        alone = _logits(bm)
    mods = [m for m in bm.model.modules() if isinstance(m, torch.nn.Linear)]
    assert not any("forward" in m.__dict__ or m._forward_hooks for m in mods)
    torch.testing.assert_close(_logits(bm), plain, atol=0, rtol=0)
    summed = {t: (torch.cat([one.factors[t][0], two.factors[t][0]], -2),
                  torch.cat([one.factors[t][1], two.factors[t][1]], -1)) for t in one.factors}
    per_row = {t: (A[None], B[None]) for t, (A, B) in summed.items()}  # N = 1: the hook path
    with applied(bm.model, per_row, one.scale):
        torch.testing.assert_close(_logits(bm), both, atol=1e-5, rtol=1e-5)
    with applied(bm.model, {t: (A[None], B[None]) for t, (A, B) in one.factors.items()}, one.scale):
        torch.testing.assert_close(_logits(bm), alone, atol=1e-5, rtol=1e-5)


def _logits_plain(bm, w0):
    saved = {n: p.clone() for n, p in bm.model.named_parameters()}
    with torch.no_grad():
        for n, p in bm.model.named_parameters():
            p.copy_(w0[n])
        out = _logits(bm)
        for n, p in bm.model.named_parameters():
            p.copy_(saved[n])
    return out


def test_adapter_roundtrip_through_peft(tiny_llama_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    bm = BaseModel.load(tiny_llama_dir)
    ad = HyperInjector(bm, _random_hyper(bm)).inject(DOC)
    ad.save(tmp_path / "ad", str(tiny_llama_dir))
    again = Adapter.load(tmp_path / "ad")
    for t in ad.factors:
        torch.testing.assert_close(ad.factors[t][0], again.factors[t][0])
        torch.testing.assert_close(ad.factors[t][1], again.factors[t][1])
    assert again.scale == ad.scale
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    peft_model = PeftModel.from_pretrained(plain, str(tmp_path / "ad")).eval()
    qs = ["Where was Ada Lovelace born?", "Who employs Ada Lovelace?"]
    with applied(bm.model, ad.factors, ad.scale):
        ours = [bm.answer(q) for q in qs]
        our_logits = _logits(bm)
    theirs_bm = BaseModel(peft_model, bm.tokenizer)
    assert [theirs_bm.answer(q) for q in qs] == ours
    with torch.no_grad():
        torch.testing.assert_close(peft_model(torch.tensor([bm.encode("Question: Where was Ada Lovelace born?\nAnswer:")])).logits, our_logits, atol=1e-4, rtol=1e-4)


def test_hypernet_save_load_and_base_mismatch(tiny_llama_dir, tmp_path):
    import pytest

    from reverie.errors import ModelLoadError

    bm = BaseModel.load(tiny_llama_dir)
    h = _random_hyper(bm)
    save_hypernet(h, tmp_path / "h", {"note": "test"})
    h2 = load_hypernet(tmp_path / "h", bm)
    for (n, p), (_, q) in zip(h.state_dict().items(), h2.state_dict().items(), strict=True):
        assert torch.equal(p.half().float(), q), n  # stored as float16 on disk
    with torch.no_grad():
        bm.model.model.embed_tokens.weight.add_(1.0)  # now a different base model
    with pytest.raises(ModelLoadError, match="another base model"):
        load_hypernet(tmp_path / "h", bm)
    (tmp_path / "h" / "hypernet.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_hypernet(tmp_path / "h")


def test_distill_injector_fits(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    cd = DistillInjector(bm, rank=4, steps=30, lr=1e-2)
    ad = cd.inject(DOC, ["Where was Ada Lovelace born?", "Who employs Ada Lovelace?"])
    assert ad.rank == 4 and ad.delta_norm() > 0
    ad2 = cd.inject(DOC)  # no probes: plain next-token fit of the document
    assert ad2.meta["final_loss"] < 6.0


def test_shared_component_penalty(tiny_llama_dir, world):
    from reverie.hypernet.train import HyperRecipe, Step

    bm = BaseModel.load(tiny_llama_dir)
    h = _random_hyper(bm)
    rc = HyperRecipe(docs_per_step=4, group_sizes=(4,), shared=1.0, rank=4, latent_dim=32, n_blocks=1)
    st = Step(bm, h, world, rc)
    d = st.data(0)
    _, info = st.loss(d)
    assert 1 / 4 <= info["shared"] <= 1.0 + 1e-5  # bounded by 1/N (unrelated) and 1 (identical)
    d["docs"] = [d["docs"][0]] * 4  # the same document four times: all deltas equal
    _, info = st.loss(d)
    assert abs(info["shared"] - 1.0) < 1e-4


def test_folded_attention_is_the_plain_computation_with_its_gradients(tiny_llama_dir):
    """The hypernetwork's fast path (key and value projections moved to the latents' side)
    computes the same factors, and the same gradients, as nn.MultiheadAttention over every
    token, with padding in the batch."""
    bm = BaseModel.load(tiny_llama_dir)
    torch.manual_seed(0)
    h = HyperNetwork(build_config(bm, 4, ("mlp.down_proj", "self_attn.o_proj"), latent_dim=32, n_blocks=2,
                                  pointer_a=True))
    with torch.no_grad():
        h.scale.normal_()
        h.key_mix.normal_()
        h.latents.normal_()
    hidden, pad, ins = read_docs(bm, [DOC, "Bo Chen lives in Oslo."], h.key_targets)
    assert pad.any()
    got = {}
    for folded in (True, False):
        h.folded = folded
        h.zero_grad()
        f, _ = h(hidden, pad, ins)
        sum((A.sin().sum() + B.cos().sum()) for A, B in f.values()).backward()
        got[folded] = (f, {n: p.grad.clone() for n, p in h.named_parameters() if p.grad is not None})
    (f1, g1), (f0, g0) = got[True], got[False]
    for t in f0:
        for x, y in zip(f1[t], f0[t], strict=True):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    # The key biases only add a constant to each row of scores: no gradient on either path
    # (the folded one leaves them out).
    assert g0.keys() - g1.keys() == {"ptr_k.bias", "key_k.bias"}
    for n in g1:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-3, atol=1e-5, msg=n)
    assert all(g0[n].abs().max() < 1e-5 for n in ("ptr_k.bias", "key_k.bias"))


def test_bfloat16_reading_returns_float32_close_to_it_and_auto_follows_the_hardware(tiny_llama_dir, monkeypatch):
    import pytest

    from reverie.errors import InputError
    from reverie.hypernet import injectors

    bm = BaseModel.load(tiny_llama_dir)
    h = _random_hyper(bm)
    exact, bf = (read_docs(bm, [DOC], ("mlp.down_proj",), d) for d in (torch.float32, torch.bfloat16))
    for a, b in ((exact[0], bf[0]), (exact[2]["mlp.down_proj"], bf[2]["mlp.down_proj"])):
        assert b.dtype == torch.float32 and not torch.equal(a, b)  # really read in bfloat16
        assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.99
    inj = HyperInjector(bm, h, read_dtype="bfloat16")
    assert inj.inject(DOC).meta["read_dtype"] == "bfloat16"
    assert HyperInjector(bm, h).inject(DOC).meta["read_dtype"] == "float32"  # the default: as trained
    auto = HyperInjector(bm, h, read_dtype="auto")
    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(injectors, "native_bf16", lambda _device, n=native: n)
        assert auto.reading_dtype == want
    with pytest.raises(InputError, match="unknown reading precision 'fp8'"):
        HyperInjector(bm, h, read_dtype="fp8")
