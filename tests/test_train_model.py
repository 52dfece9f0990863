"""train.model and train.export: loss sums, per-document attention, filler batches, optimizer
groups, sizes, and a logits-exact round trip through Hugging Face `transformers`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dataprep
from train.model import BERT, GPT, ModelConfig, build_model, model_config

VOCAB = 400
T = 16
PAD = 1

ARCHS = [("gpt", False), ("bert", False), ("bert", True)]
ARCH_IDS = ["gpt", "bert", "bert-nsp"]


def tiny(arch: str, nsp: bool = False, **overrides) -> GPT | BERT:
    torch.manual_seed(0)
    pad = {"pad_id": PAD} if arch == "bert" else {}
    cfg = model_config("tiny", arch, VOCAB, 32, nsp_head=nsp, **pad, **overrides)
    return build_model(cfg).eval()


def mlm_batch(B: int = 3, masked: float = 0.3) -> dict[str, torch.Tensor]:
    """Right-padded MLM rows with two segments, some masked targets and NSP labels."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (B, T), generator=g)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[1, 11:] = 0
    ids[attention_mask == 0] = PAD
    token_type_ids = (torch.arange(T) >= 7).long().expand(B, T) * attention_mask
    pick = (torch.rand(B, T, generator=g) < masked) & attention_mask.bool()
    labels = torch.where(pick, ids, torch.full_like(ids, -100))
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "nsp_labels": torch.tensor([0, 1, -100])[:B],
    }


def test_gpt_loss_is_summed_cross_entropy() -> None:
    model = tiny("gpt")
    ids = torch.randint(0, VOCAB, (2, T))
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = -100
    labels[1, 9:] = -100
    out = model(input_ids=ids, labels=labels, sample_index=torch.tensor([4, 7]))
    assert set(out) == {"lm"} and out["lm"].dtype == torch.float32 and out["lm"].ndim == 0
    logits = model.logits(ids)
    assert logits.shape == (2, T, model.cfg.vocab_size)
    expected = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), reduction="sum")
    torch.testing.assert_close(out["lm"], expected)


@pytest.mark.parametrize("nsp", [False, True], ids=["mlm", "mlm-nsp"])
def test_bert_masked_only_head_equals_full_head(nsp: bool) -> None:
    model = tiny("bert", nsp)
    batch = mlm_batch()
    out = model(**batch)
    assert set(out) == ({"lm", "nsp"} if nsp else {"lm"})
    fields = {k: batch[k] for k in ("attention_mask", "token_type_ids")}
    logits = model.logits(batch["input_ids"], **fields)
    labels = batch["labels"]
    expected = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), reduction="sum")
    torch.testing.assert_close(out["lm"], expected)
    # The gathered head gives the full head's logits at the masked positions.
    h = model.hidden_states(batch["input_ids"], **fields)
    sel = labels != -100
    torch.testing.assert_close(model._mlm_logits(h[sel]), logits[sel])
    if nsp:
        nsp_logits = model.nsp_logits(batch["input_ids"], **fields)
        expected = F.cross_entropy(nsp_logits, batch["nsp_labels"], reduction="sum")
        torch.testing.assert_close(out["nsp"], expected)


def test_gpt_doc_ids_isolate_packed_documents() -> None:
    model = tiny("gpt")
    lengths = [5, 7, 4]
    docs = [torch.randint(0, VOCAB, (1, n)) for n in lengths]
    packed = torch.cat(docs, dim=1)  # (1, 16)
    doc_ids = torch.cat([torch.full((1, n), i) for i, n in enumerate(lengths)], dim=1)
    position_ids = torch.cat([torch.arange(n)[None] for n in lengths], dim=1)
    with torch.no_grad():
        logits = model.logits(packed, doc_ids=doc_ids, position_ids=position_ids)
        start = 0
        for doc in docs:
            n = doc.size(1)
            torch.testing.assert_close(logits[:, start : start + n], model.logits(doc))
            start += n
        # One document in the whole row: the explicit mask equals the is_causal fast path.
        torch.testing.assert_close(
            model.logits(packed, doc_ids=torch.zeros_like(packed)), model.logits(packed)
        )


@pytest.mark.parametrize(("arch", "nsp"), [*ARCHS, ("bert-no-nsp-labels", True)])
def test_filler_batch_has_zero_loss_and_full_grads(arch: str, nsp: bool) -> None:
    drop_nsp_labels = arch == "bert-no-nsp-labels"
    arch = arch.split("-")[0]
    model = tiny(arch, nsp).train()
    batch = mlm_batch() if arch == "bert" else {"input_ids": torch.randint(0, VOCAB, (3, T))}
    batch["labels"] = torch.full((3, T), -100)
    batch["sample_index"] = torch.full((3,), -1)
    if arch == "bert":
        batch["attention_mask"][2] = 0  # a filler row may be all padding
    if "nsp_labels" in batch:
        batch["nsp_labels"] = torch.full((3,), -100)
        if drop_nsp_labels:
            del batch["nsp_labels"]
    out = model(**batch)
    total = sum(out.values())
    assert total.item() == 0.0
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert not p.grad.any(), name


@pytest.mark.parametrize(("arch", "nsp"), ARCHS, ids=ARCH_IDS)
def test_param_groups_cover_every_parameter_once(arch: str, nsp: bool) -> None:
    model = tiny(arch, nsp)
    decay, no_decay = model.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    listed = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {id(p) for p in model.parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim < 2 for p in no_decay["params"])
    assert sum(p.numel() for p in model.parameters()) == model.num_params()


def test_unknown_fields_are_rejected() -> None:
    model = tiny("gpt")
    ids = torch.randint(0, VOCAB, (1, T))
    # Contract fields a GPT does not use are accepted and ignored.
    model(input_ids=ids, labels=ids, token_type_ids=torch.zeros_like(ids))
    with pytest.raises(TypeError, match="docid"):
        model(input_ids=ids, labels=ids, docid=ids)


def test_config_presets_and_round_trip() -> None:
    cfg = model_config("mini", "bert", vocab_size=1000, max_seq_len=128, nsp_head=True, n_layer=2)
    assert (cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.d_model) == (1024, 2, 4, 256)
    assert cfg.d_ff == 1024 and cfg.layer_norm_eps == 1e-12
    assert model_config("tiny", "gpt", 64, 8).layer_norm_eps == 1e-5
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert model_config("base", "bert", 10, 8) == model_config("small", "bert", 10, 8)
    with pytest.raises(ValueError, match="unknown ModelConfig"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_embd": 3})
    with pytest.raises(ValueError, match="preset"):
        model_config("huge", "gpt", 10, 8)


def test_sizes_match_gpt2_small_and_bert_base() -> None:
    with torch.device("meta"):  # shapes only: no memory, no init time
        gpt = GPT(model_config("small", "gpt", 50257, 1024, pad_vocab=False))
        bert = BERT(model_config("base", "bert", 30522, 512, pad_vocab=False, nsp_head=True))
    assert gpt.num_params() == 124_439_808  # GPT2LMHeadModel("gpt2")
    assert bert.num_params() == 110_106_428  # BertForPreTraining("bert-base-uncased")
    non_embedding = 124_439_808 - (50257 + 1024) * 768
    assert gpt.num_params(non_embedding=True) == non_embedding
    assert gpt.flops_per_token(1024) == 6 * (non_embedding + 50257 * 768) + 12 * 12 * 768 * 1024
    # The masked-only MLM head makes BERT cheaper per token than the upper bound.
    assert bert.flops_per_token(512, mlm_fraction=0.15) < bert.flops_per_token(512)


# ---------------------------------------------------------------------------------------------
# Hugging Face round trip


@pytest.fixture(scope="module")
def tokenizer_json(
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
) -> tuple[Path, dataprep.Tokenizer]:
    return specials_tokenizer


GPT_SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "[PAD]"}
BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


@pytest.mark.parametrize(("arch", "nsp"), ARCHS, ids=ARCH_IDS)
def test_hf_round_trip(
    arch: str, nsp: bool, tokenizer_json: tuple[Path, dataprep.Tokenizer], tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    from train.export import export_hf

    path, tok = tokenizer_json
    model = tiny(arch, nsp)
    specials = GPT_SPECIALS if arch == "gpt" else BERT_SPECIALS
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale").write_text("replaced")  # an existing export is replaced as a whole
    assert export_hf(model, model.cfg, path, out, special_tokens=specials) == out
    assert not (out / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no temp dirs left

    batch = mlm_batch()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        if arch == "gpt":
            hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
            assert type(hf).__name__ == "GPT2LMHeadModel"
            assert hf.config.eos_token_id == tok.special_id("<|endoftext|>") == 0
            ours, theirs = model.logits(ids), hf(input_ids=ids, attention_mask=mask).logits
            # Right padding: real tokens never see it under the causal mask.
            torch.testing.assert_close(theirs[mask.bool()], ours[mask.bool()], atol=1e-5, rtol=0)
        else:
            fields = {"attention_mask": mask, "token_type_ids": batch["token_type_ids"]}
            ours = model.logits(ids, **fields)
            hf = transformers.BertForMaskedLM.from_pretrained(out).eval()
            theirs = hf(input_ids=ids, **fields).logits
            torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
            if nsp:
                hf = transformers.BertForPreTraining.from_pretrained(out).eval()
                res = hf(input_ids=ids, **fields)
                torch.testing.assert_close(res.prediction_logits, ours, atol=1e-5, rtol=0)
                torch.testing.assert_close(
                    res.seq_relationship_logits,
                    model.nsp_logits(ids, **fields),
                    atol=1e-5,
                    rtol=0,
                )

    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert isinstance(hf_tok, transformers.PreTrainedTokenizerFast)
    for key, token in specials.items():
        assert getattr(hf_tok, key) == token
    text = "The quick brown fox."
    assert hf_tok(text)["input_ids"] == tok.encode(text)


def test_export_run_uses_latest_checkpoint_and_shard_tokenizer(
    tokenizer_json: tuple[Path, dataprep.Tokenizer], demo_corpus: Path, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    from train import checkpoint
    from train.export import export_run

    path, _ = tokenizer_json
    shards = tmp_path / "shards"
    m = dataprep.tokenize(demo_corpus, path, shards, seq_len=64, objective="mlm", threads=1)
    assert m["mlm"] == {**m["mlm"], "cls_id": 2, "sep_id": 3, "pad_id": PAD, "mask_id": 4}
    model = tiny("bert", True)
    meta = {"config": {"shards": str(shards)}, "model_config": model.cfg.to_dict()}
    run = tmp_path / "run"
    checkpoint.save(run, 7, {**meta, "model": model.state_dict()}, meta, keep_last=1)

    out = export_run(run)
    assert out == run / "hf"
    hf = transformers.BertForPreTraining.from_pretrained(out).eval()
    batch = mlm_batch()
    fields = {"attention_mask": batch["attention_mask"], "token_type_ids": batch["token_type_ids"]}
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"], **fields).seq_relationship_logits
        ours = model.nsp_logits(batch["input_ids"], **fields)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (hf_tok.cls_token, hf_tok.sep_token, hf_tok.mask_token) == ("[CLS]", "[SEP]", "[MASK]")
