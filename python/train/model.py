"""GPT (pre-LN decoder) and BERT (post-LN encoder with MLM/NSP heads), and their size presets.

Both models are parameter-for-parameter the Hugging Face `GPT2LMHeadModel` and
`BertForPreTraining` / `BertForMaskedLM` architectures, so `train.export` can hand the weights to
`transformers` and get the same logits. They differ from those classes only in how they are fed
and what they return: `model(**micro_batch)` takes the micro-batch contract of `train` (see
`train/__init__.py`) and returns loss *sums* in fp32 (`{"lm": ...}`, plus `{"nsp": ...}` for BERT
with the NSP head); the loop divides by the global target count of the optimizer step.

Every parameter takes part in every forward, even for a batch whose labels are all -100 (filler
rows at the end of an epoch): the losses are then 0 with zero gradients, so DDP never waits for a
gradient that is not coming and `find_unused_parameters` can stay off.

>>> cfg = model_config("tiny", "gpt", vocab_size=1000, max_seq_len=32)
>>> cfg.vocab_size  # padded up to a multiple of 64
1024
>>> model = build_model(cfg)
>>> ids = torch.randint(0, 1000, (2, 16))
>>> sorted(model(input_ids=ids, labels=ids))
['lm']
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from torch.utils.checkpoint import checkpoint

# NOTE (typing): torch annotates `nn.Module.__call__` as returning Any, so a method that returns a
# submodule's output carries `# type: ignore[no-any-return]`; the value is a Tensor.

IGNORE_INDEX = -100

# Fields of the micro-batch contract a model accepts besides `input_ids` and `labels`. Each model
# uses the ones that apply to it and ignores the rest; any other name is a caller bug (TypeError).
CONTRACT_FIELDS = frozenset(
    {"sample_index", "position_ids", "doc_ids", "attention_mask", "token_type_ids", "nsp_labels"}
)


@dataclass
class ModelConfig:
    """Architecture hyperparameters; stored in checkpoints with `to_dict()`."""

    arch: str  # "gpt" (causal decoder, CLM) or "bert" (bidirectional encoder, MLM)
    vocab_size: int  # embedding rows; may exceed the tokenizer's vocabulary (see model_config)
    max_seq_len: int  # learned position embeddings (GPT-2 `n_positions`)
    n_layer: int
    n_head: int
    d_model: int  # hidden size; a multiple of n_head
    d_ff: int | None = None  # MLP inner size; None -> 4 * d_model
    dropout: float = 0.0  # embedding, attention-probability and residual dropout alike
    nsp_head: bool = False  # BERT only: pooler + next-sentence classifier
    type_vocab_size: int = 2  # BERT only: token-type (segment) embeddings
    layer_norm_eps: float | None = None  # None -> 1e-5 (GPT-2) or 1e-12 (BERT)
    pad_id: int | None = None  # BERT: its embedding row starts at zero (as HF initializes it)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.arch not in ("gpt", "bert"):
            raise ValueError(f"arch must be 'gpt' or 'bert', not {self.arch!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_head {self.n_head}")
        if self.nsp_head and self.arch != "bert":
            raise ValueError("nsp_head needs arch='bert'")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} outside the vocabulary ({self.vocab_size})")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.layer_norm_eps is None:
            self.layer_norm_eps = 1e-5 if self.arch == "gpt" else 1e-12

    @property
    def ln_eps(self) -> float:
        """`layer_norm_eps` as `__post_init__` resolved it (never None after it)."""
        assert self.layer_norm_eps is not None
        return self.layer_norm_eps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)


# Sizes by name. small == base: GPT-2 small (124M) / BERT-base; medium and large are GPT-2's.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 2, "d_model": 64},  # unit tests
    "mini": {"n_layer": 4, "n_head": 4, "d_model": 256},
    "small": {"n_layer": 12, "n_head": 12, "d_model": 768},
    "base": {"n_layer": 12, "n_head": 12, "d_model": 768},
    "medium": {"n_layer": 24, "n_head": 16, "d_model": 1024},
    "large": {"n_layer": 36, "n_head": 20, "d_model": 1280},
}

VOCAB_MULTIPLE = 64


def model_config(
    preset: str,
    arch: str,
    vocab_size: int,
    max_seq_len: int,
    *,
    pad_vocab: bool = True,
    **overrides: Any,
) -> ModelConfig:
    """A `ModelConfig` from a preset name; `overrides` replace preset (or default) fields.

    The vocabulary is padded up to a multiple of 64: matmuls whose dimensions are multiples of 64
    use the GPU's tensor cores fully (nanoGPT's 50257 -> 50304 is ~25% faster). The extra ids
    never occur in the data; their logits only learn to be small. `pad_vocab=False` keeps
    `vocab_size` as given.

    >>> model_config("mini", "bert", vocab_size=30522, max_seq_len=128, n_layer=2).vocab_size
    30528
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if pad_vocab:
        vocab_size = -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    fields = {**PRESETS[preset], "vocab_size": vocab_size, **overrides}
    return ModelConfig(arch=arch, max_seq_len=max_seq_len, **fields)


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - CONTRACT_FIELDS
    if unknown:
        raise TypeError(f"unexpected micro-batch fields: {sorted(unknown)}")


def _lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Summed cross-entropy in fp32 over positions whose label is not -100 (0 if none)."""
    return F.cross_entropy(
        logits.float().view(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


# How `--activation-checkpointing` picks the blocks whose activations are recomputed.
CHECKPOINT_MODES = ("none", "full", "selective")


class _Block(nn.Module):
    """A transformer block; `checkpointed` blocks recompute their activations in the backward
    (`torch.utils.checkpoint`, non-reentrant: dropout masks are replayed from the saved RNG)."""

    checkpointed = False


class _Module(nn.Module):
    """What GPT and BERT share: parameter counts, optimizer groups, block-level activation
    checkpointing and compilation."""

    cfg: ModelConfig

    def _embedding_params(self) -> list[Tensor]:
        raise NotImplementedError

    def blocks_list(self) -> list[_Block]:
        """The transformer blocks, input to output (the units of FSDP, checkpointing, compile)."""
        raise NotImplementedError

    def set_activation_checkpointing(self, mode: str) -> None:
        """`none`, `full` (every block) or `selective` (every other block: 1, 3, 5, ...; the
        blocks between keep their activations, so about half the memory for half the recompute).
        """
        if mode not in CHECKPOINT_MODES:
            raise ValueError(f"activation checkpointing {mode!r}: choose from {CHECKPOINT_MODES}")
        for i, block in enumerate(self.blocks_list()):
            block.checkpointed = mode == "full" or (mode == "selective" and i % 2 == 1)

    def compile_blocks(self, **kwargs: Any) -> None:
        """`torch.compile(fullgraph=True)` on each block's forward: a block has static shapes and
        no data-dependent control flow, so it compiles to one graph (tested in
        tests/test_train_parallel.py); what is data-dependent (BERT's unpadding, the gather of the
        masked positions) stays eager between blocks. Compiling `forward` (not wrapping the
        module) keeps parameter names, hooks (FSDP) and checkpoints as they are."""
        for block in self.blocks_list():
            block.forward = torch.compile(block.forward, fullgraph=True, **kwargs)

    def _run_block(self, block: nn.Module, *args: Any) -> Tensor:
        if getattr(block, "checkpointed", False) and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)  # type: ignore[no-any-return]
        return block(*args)  # type: ignore[no-any-return]

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (tied weights once); `non_embedding` leaves out the token,
        position and token-type embedding tables (and so the LM-head weight tied to them)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self._embedding_params())
        return n

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: weight decay on matrices and embeddings (ndim >= 2), none on biases and
        LayerNorm weights. Each parameter appears once (`named_parameters` skips tied aliases).
        """
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for _, p in self.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def _positions(self, input_ids: Tensor, position_ids: Tensor | None) -> Tensor:
        """`position_ids`, or 0..T-1 as (1, T); a row longer than the position table is an error."""
        T = input_ids.size(1)
        if self.cfg.max_seq_len < T:
            raise ValueError(f"sequence length {T} > max_seq_len {self.cfg.max_seq_len}")
        if position_ids is None:
            return torch.arange(T, device=input_ids.device).unsqueeze(0)  # (1, T)
        return position_ids

    def _init_linear_and_embedding(self) -> None:
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _flex(q: Tensor, k: Tensor, v: Tensor, block_mask: BlockMask) -> Tensor:
    """flex_attention: compiled on CUDA (the fused kernel skips the masked-out blocks), eager
    elsewhere (a reference implementation; exact, but it computes the full score matrix).
    Inside a compiled block it is traced as it is (and fused by inductor)."""
    if torch.compiler.is_compiling():
        # NOTE: neither the cached compiled function nor catch_warnings below can be traced:
        # both broke the block's graph (tests/test_train_parallel.py compiles with fullgraph).
        return flex_attention(q, k, v, block_mask=block_mask)  # type: ignore[return-value]
    if q.is_cuda:
        return _compiled_flex()(q, k, v, block_mask=block_mask)  # type: ignore[no-any-return]
    with warnings.catch_warnings():
        # "flex_attention called without torch.compile()": on CPU, on purpose (see above).
        warnings.simplefilter("ignore", UserWarning)
        return flex_attention(q, k, v, block_mask=block_mask)  # type: ignore[return-value]


def varlen_attention(
    q: Tensor, k: Tensor, v: Tensor, offsets: Tensor, max_len: int, dropout: float = 0.0
) -> Tensor:
    """Bidirectional attention within each of the packed sequences: q, k, v are (N, nh, hs),
    sequence b is rows offsets[b]:offsets[b+1] (none empty), `max_len` the longest. Returns
    (N, nh, hs).

    On CUDA: a jagged nested tensor, which SDPA runs with the flash varlen kernel (no padding
    at all). Elsewhere: the sequences are scattered into (B, max_len) slots, attended with a key
    mask and gathered back (MosaicBERT's fallback): exact, and padded only to the longest row of
    the batch. NOTE: the nested-tensor path is not used on CPU: its kernel choice queries cuDNN
    and fails on machines with a CUDA build but no driver (torch 2.9); its CPU kernel loops over
    the sequences anyway.
    """
    if q.is_cuda:
        qn, kn, vn = (
            torch.nested.nested_tensor_from_jagged(
                t, offsets, min_seqlen=1, max_seqlen=max_len
            ).transpose(1, 2)  # (B, nh, j, hs)
            for t in (q, k, v)
        )
        y = F.scaled_dot_product_attention(qn, kn, vn, dropout_p=dropout)
        return y.transpose(1, 2).values()
    N = q.size(0)
    B = offsets.numel() - 1
    token = torch.arange(N, device=q.device)
    row = torch.bucketize(token, offsets[1:], right=True)  # (N,) the sequence of each token
    slot = token - offsets[row]  # (N,) its position in the sequence
    lengths = offsets[1:] - offsets[:-1]
    keys = (torch.arange(max_len, device=q.device) < lengths[:, None])[:, None, None, :]

    def pad(t: Tensor) -> Tensor:  # (N, nh, hs) -> (B, nh, max_len, hs)
        out = t.new_zeros(B, max_len, *t.shape[1:])
        return out.index_put((row, slot), t).transpose(1, 2)

    y = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=keys, dropout_p=dropout)
    return y.transpose(1, 2)[row, slot]


@functools.cache
def _compiled_flex() -> Any:
    return torch.compile(flex_attention, dynamic=False)


# ---------------------------------------------------------------------------------------------
# GPT


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # HF c_attn (Conv1D, transposed)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)  # HF c_proj
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor | BlockMask | None) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if isinstance(mask, BlockMask):
            if self.training and self.dropout > 0:
                raise ValueError("flex attention (document masking) has no attention dropout")
            y = _flex(q, k, v, block_mask=mask)  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(  # (B, nh, T, hs)
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=mask is None,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))  # type: ignore[no-any-return]


class GPTMLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.d_ff is not None
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)  # HF c_fc
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)  # HF c_proj
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # GPT-2's "gelu_new" is the tanh approximation.
        return self.drop(self.proj(F.gelu(self.fc(x), approximate="tanh")))  # type: ignore[no-any-return]


class GPTBlock(_Block):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.mlp = GPTMLP(cfg)

    def forward(self, x: Tensor, mask: Tensor | BlockMask | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))  # type: ignore[no-any-return]


class GPT(_Module):
    """GPT-2: learned token + position embeddings, pre-LN blocks, final LN, tied LM head.

    Contract fields used: `position_ids`, `doc_ids` (per-document causal attention in packed
    rows). `attention_mask`, `token_type_ids`, `nsp_labels` and `sample_index` are accepted and
    ignored: CLM rows are packed or right-padded, and under the causal mask no real token sees
    the padding after it. (HF GPT-2 adds `wte(token_type_ids)` when given them; we never do.)
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "gpt":
            raise ValueError(f"GPT needs arch='gpt', not {cfg.arch!r}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        blocks = [GPTBlock(cfg) for _ in range(cfg.n_layer)]
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self._init_linear_and_embedding()
        # GPT-2: the two residual projections per block add up along depth; scale their init.
        for block in blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(
                    proj.weight, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer)
                )

    # How rows with `doc_ids` attend: "flex" = a flex_attention block mask (only the blocks
    # that hold same-document pairs are computed; no B x T x T tensor), "dense" = a boolean
    # (B, 1, T, T) mask for SDPA, "auto" = flex on CUDA without attention dropout, else dense.
    # NOTE: on CPU, eager flex_attention materialises the scores anyway (exact, tested equal to
    # the dense mask, but no faster), so auto keeps the dense mask there.
    doc_attention: str = "auto"

    def _embedding_params(self) -> list[Tensor]:
        return [self.wte.weight, self.wpe.weight]

    def blocks_list(self) -> list[_Block]:
        return list(self.blocks)  # type: ignore[arg-type]

    def doc_mask(self, doc_ids: Tensor) -> Tensor | BlockMask:
        """The attention mask of packed rows: causal, and only within a document."""
        B, T = doc_ids.shape
        flex = self.doc_attention == "flex" or (
            self.doc_attention == "auto" and doc_ids.is_cuda and self.cfg.dropout == 0
        )
        if flex:

            def causal_same_doc(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
                return (doc_ids[b, q] == doc_ids[b, kv]) & (q >= kv)

            return create_block_mask(causal_same_doc, B, None, T, T, device=doc_ids.device)
        # NOTE: an explicit mask rules out the flash kernel (SDPA picks memory-efficient
        # attention instead); rows without doc_ids keep the is_causal fast path.
        causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
        same_doc = doc_ids.unsqueeze(2) == doc_ids.unsqueeze(1)  # (B, T, T)
        return (same_doc & causal).unsqueeze(1)  # (B, 1, T, T), True = attend

    def hidden_states(
        self, input_ids: Tensor, position_ids: Tensor | None = None, doc_ids: Tensor | None = None
    ) -> Tensor:
        """Final-LN hidden states (B, T, C)."""
        x = self.drop(self.wte(input_ids) + self.wpe(self._positions(input_ids, position_ids)))
        mask = None if doc_ids is None else self.doc_mask(doc_ids)
        for block in self.blocks:
            x = self._run_block(block, x, mask)
        return self.ln_f(x)  # type: ignore[no-any-return]

    def logits(self, input_ids: Tensor, **fields: Any) -> Tensor:
        """Full (B, T, vocab_size) logits."""
        _check_fields(fields)
        h = self.hidden_states(input_ids, fields.get("position_ids"), fields.get("doc_ids"))
        return self.lm_head(h)  # type: ignore[no-any-return]

    def forward(self, input_ids: Tensor, labels: Tensor, **fields: Any) -> dict[str, Tensor]:
        """Summed next-token loss: `{"lm": fp32 scalar}` over positions with labels != -100.

        Labels are already shifted (labels[t] is the target after input_ids[t]).
        """
        return {"lm": _lm_loss(self.logits(input_ids, **fields), labels)}

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 * N + 12 * n_layer * d_model * seq_len.

        PaLM (Chowdhery et al. 2022, appendix B): N counts every weight a token is multiplied
        by: the non-embedding parameters (blocks, final LN) plus the LM-head matmul
        (vocab_size * d_model); embedding lookups are free. The second term is the attention
        score and value matmuls (QK^T and AV, 2 * 2 * T * d per layer forward, x3 for
        backward) without discounting the causal mask's zero half, as PaLM and nanoGPT count.
        """
        n = self.num_params(non_embedding=True) + self.cfg.vocab_size * self.cfg.d_model
        return 6.0 * n + 12.0 * self.cfg.n_layer * self.cfg.d_model * seq_len


# ---------------------------------------------------------------------------------------------
# BERT


class BertLayer(_Block):
    """Post-LN encoder layer: x = LN(x + attn(x)); x = LN(x + mlp(x)); exact GELU.

    Padded input is (B, T, C) with a key mask; unpadded input is the real tokens of all rows,
    (N, C), with `offsets` (B + 1,) where row b is tokens offsets[b]:offsets[b+1] and attends
    only within itself (varlen attention through a jagged nested tensor: flash varlen on CUDA).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.d_ff is not None
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        # Fused q, k, v (HF: separate query/key/value Linears; export splits it).
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.attn_out = nn.Linear(cfg.d_model, cfg.d_model)  # HF attention.output.dense
        self.attn_ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)  # HF intermediate.dense
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)  # HF output.dense
        self.out_ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        offsets: Tensor | None = None,
        max_len: int | None = None,
    ) -> Tensor:
        dropout = self.dropout if self.training else 0.0
        if offsets is not None:
            assert max_len is not None
            N, C = x.shape
            q, k, v = self.qkv(x).view(N, 3, self.n_head, C // self.n_head).unbind(1)
            y = varlen_attention(q, k, v, offsets, max_len, dropout).reshape(N, C)
        else:
            B, T, C = x.shape
            q, k, v = self.qkv(x).split(C, dim=2)
            q, k, v = (
                t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)
            )
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
            y = y.transpose(1, 2).contiguous().view(B, T, C)  # from (B, nh, T, hs)
        x = self.attn_ln(x + self.drop(self.attn_out(y)))
        return self.out_ln(x + self.drop(self.out(F.gelu(self.fc(x)))))  # type: ignore[no-any-return]


class BERT(_Module):
    """BERT: word + position + token-type embeddings -> LN -> post-LN encoder -> MLM head
    (dense, GELU, LN, decoder tied to the word embeddings + bias); with `nsp_head` also the
    pooler (dense + tanh on [CLS], position 0) and the 2-way next-sentence classifier.

    Contract fields used: `attention_mask` (1 = real token; padding is masked out as keys),
    `token_type_ids`, `nsp_labels`, `position_ids`. `doc_ids` and `sample_index` are ignored.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "bert":
            raise ValueError(f"BERT needs arch='bert', not {cfg.arch!r}")
        self.cfg = cfg
        C = cfg.d_model
        self.word_emb = nn.Embedding(cfg.vocab_size, C)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, C)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, C)
        self.emb_ln = nn.LayerNorm(C, eps=cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.n_layer))
        # MLM head (HF cls.predictions): transform, then the tied decoder plus an output bias.
        self.mlm_dense = nn.Linear(C, C)
        self.mlm_ln = nn.LayerNorm(C, eps=cfg.ln_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        if cfg.nsp_head:
            self.pooler = nn.Linear(C, C)
            self.nsp = nn.Linear(C, 2)
        self._init_linear_and_embedding()
        if cfg.pad_id is not None:
            with torch.no_grad():
                self.word_emb.weight[cfg.pad_id].zero_()

    # Run `forward` on the real tokens only (`--unpad`, set by the trainer; not part of the
    # architecture, so not in ModelConfig): the embeddings, every Linear, LayerNorm and GELU see
    # N real tokens instead of B x T slots, and attention is varlen per row. `logits` and
    # `nsp_logits` (evaluation of every position, export checks) stay padded.
    unpad: bool = False

    def _embedding_params(self) -> list[Tensor]:
        return [self.word_emb.weight, self.pos_emb.weight, self.type_emb.weight]

    def blocks_list(self) -> list[_Block]:
        return list(self.layers)  # type: ignore[arg-type]

    def _embed(self, ids: Tensor, positions: Tensor, token_type_ids: Tensor | None) -> Tensor:
        """LN(word + position + token type) embeddings, then dropout; any leading shape."""
        x: Tensor = self.word_emb(ids) + self.pos_emb(positions)
        if token_type_ids is None:
            x = x + self.type_emb.weight[0]
        else:
            x = x + self.type_emb(token_type_ids)
        return self.drop(self.emb_ln(x))  # type: ignore[no-any-return]

    @staticmethod
    def _keys(attention_mask: Tensor) -> Tensor:
        """(B, T) bool, True = a key to attend to. NOTE: a row with no real token (a filler row)
        attends to every key instead: a fully masked softmax row is NaN in some SDPA kernels,
        and NaN * 0 in the backward would poison the gradients. HF's additive mask makes such
        rows uniform."""
        keep = attention_mask.bool()
        return keep | ~keep.any(dim=1, keepdim=True)

    def hidden_states(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Encoder output (B, T, C)."""
        x = self._embed(input_ids, self._positions(input_ids, position_ids), token_type_ids)
        # Key padding mask, broadcast over heads and queries; padded queries still get (unused)
        # outputs, as in HF.
        mask = None
        if attention_mask is not None:
            mask = self._keys(attention_mask)[:, None, None, :]  # (B, 1, 1, T)
        for layer in self.layers:
            x = self._run_block(layer, x, mask)
        return x

    def hidden_states_unpadded(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder output of the real tokens: `(h (N, C), index (N,), offsets (B + 1,))` where
        `index` are their flat positions in the (B, T) batch, in order, and row b is
        `h[offsets[b]:offsets[b+1]]`. Equal to `hidden_states(...)` at those positions (within
        float rounding: other kernels, other summation order).

        The unpadding (`nonzero`, the longest row) is data-dependent and waits for the device
        once; it runs here, eagerly, outside the compiled blocks.
        """
        B, T = input_ids.shape
        keep = self._keys(attention_mask)
        lengths = keep.sum(dim=1)
        offsets = F.pad(lengths.cumsum(0), (1, 0))  # (B + 1,) int64
        index = keep.reshape(-1).nonzero().squeeze(1)  # (N,)
        max_len = int(lengths.max())
        positions = self._positions(input_ids, position_ids).expand(B, T).reshape(-1)
        types = None if token_type_ids is None else token_type_ids.reshape(-1)[index]
        x = self._embed(input_ids.reshape(-1)[index], positions[index], types)  # (N, C)
        for layer in self.layers:
            x = self._run_block(layer, x, None, offsets, max_len)
        return x, index, offsets

    def _mlm_logits(self, h: Tensor) -> Tensor:
        h = self.mlm_ln(F.gelu(self.mlm_dense(h)))
        return F.linear(h, self.word_emb.weight, self.mlm_bias)

    def _nsp_logits(self, cls: Tensor) -> Tensor:
        """(B, 2) from the hidden states of each row's first token (B, C)."""
        return self.nsp(torch.tanh(self.pooler(cls)))  # type: ignore[no-any-return]

    def _encode(self, input_ids: Tensor, fields: dict[str, Any]) -> Tensor:
        _check_fields(fields)
        return self.hidden_states(
            input_ids,
            fields.get("attention_mask"),
            fields.get("token_type_ids"),
            fields.get("position_ids"),
        )

    def logits(self, input_ids: Tensor, **fields: Any) -> Tensor:
        """Full (B, T, vocab_size) MLM logits (every position; for eval and export checks)."""
        return self._mlm_logits(self._encode(input_ids, fields))

    def nsp_logits(self, input_ids: Tensor, **fields: Any) -> Tensor:
        """(B, 2) next-sentence logits: 0 = B follows A, 1 = B is random."""
        if not self.cfg.nsp_head:
            raise ValueError("this model has no NSP head (nsp_head=False)")
        return self._nsp_logits(self._encode(input_ids, fields)[:, 0])

    def forward(self, input_ids: Tensor, labels: Tensor, **fields: Any) -> dict[str, Tensor]:
        """Summed losses: `{"lm": ...}` over masked positions (labels != -100), and with the NSP
        head `{"nsp": ...}` over rows with nsp_labels != -100 (0, still in the graph, when the
        batch has no `nsp_labels`).

        The MLM head runs only on the labelled positions (~15%): their hidden states are gathered
        first, which saves most of the head's FLOPs (the vocab_size x d_model decoder dominates
        a small model's cost). With `unpad` (and an `attention_mask`) the encoder runs on the
        real tokens only (`hidden_states_unpadded`); labels must then sit on real tokens (the
        data never labels padding), and NSP reads each row's first real token ([CLS]).
        """
        _check_fields(fields)
        attention_mask = fields.get("attention_mask")
        flat = labels.reshape(-1)
        if self.unpad and attention_mask is not None:
            h, index, offsets = self.hidden_states_unpadded(
                input_ids, attention_mask, fields.get("token_type_ids"), fields.get("position_ids")
            )  # (N, C)
            flat = flat[index]
            cls = h.index_select(0, offsets[:-1])  # (B, C)
        else:
            h3 = self._encode(input_ids, fields)  # (B, T, C)
            cls = h3[:, 0]
            h = h3.reshape(-1, h3.size(-1))
        # NOTE: nonzero() waits for the GPU (data-dependent shape). Tried-and-kept: the sync is
        # one per micro-batch, while the full head would cost ~6x the masked-only head. It is
        # also why a whole-model torch.compile broke its graph here: --compile compiles the
        # blocks, and this gather stays eager.
        idx = (flat != IGNORE_INDEX).nonzero().squeeze(1)  # (M,)
        picked = h.index_select(0, idx)  # (M, C); M = 0 is fine
        out = {"lm": _lm_loss(self._mlm_logits(picked), flat.index_select(0, idx))}
        if self.cfg.nsp_head:
            nsp_logits = self._nsp_logits(cls)
            nsp_labels = fields.get("nsp_labels")
            if nsp_labels is None:
                out["nsp"] = nsp_logits.float().sum() * 0.0  # keeps the head in the graph (DDP)
            else:
                out["nsp"] = F.cross_entropy(
                    nsp_logits.float(), nsp_labels, ignore_index=IGNORE_INDEX, reduction="sum"
                )
        return out

    def flops_per_token(self, seq_len: float, *, mlm_fraction: float = 1.0) -> float:
        """Training FLOPs per token (forward + backward), PaLM's 6 * N + 12 * n_layer * d_model *
        seq_len (see `GPT.flops_per_token`).

        N = encoder weights (embedding LN, layers) + mlm_fraction * (MLM transform + decoder
        matmul vocab_size * d_model), + the pooler and NSP classifier divided by seq_len (they
        run once per row). The MLM head runs only on the masked positions, so pass the masking
        rate (e.g. 0.15) for the real count; the default 1.0 is an upper bound. Attention is
        bidirectional, so its term is exact here.
        """
        cfg = self.cfg
        C = cfg.d_model
        head = C * C + C + 2 * C + cfg.vocab_size * C + cfg.vocab_size  # dense, LN, decoder+bias
        pooled = (C * C + C + 2 * C + 2) if cfg.nsp_head else 0
        encoder = self.num_params(non_embedding=True) - (head - cfg.vocab_size * C) - pooled
        n = encoder + mlm_fraction * head + pooled / seq_len
        return 6.0 * n + 12.0 * cfg.n_layer * C * seq_len


def build_model(cfg: ModelConfig) -> GPT | BERT:
    """The model for `cfg.arch`, freshly initialized (GPT-2 / BERT schemes, std cfg.init_std)."""
    return GPT(cfg) if cfg.arch == "gpt" else BERT(cfg)
