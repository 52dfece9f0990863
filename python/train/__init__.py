"""train: stream dataprep shards into (distributed) pretraining of GPT- and BERT-style models.

Launch with `torchrun ... -m train --shards DIR --objective {clm,mlm} --model tiny` (README).

Modules:
    config      run configuration (a dataclass per section, each field with its help, default
                and bounds; defaults < TOML file < command-line overrides)
    data        global shuffle, per-rank step plan, micro-batches, loaders (the shards are
                read with `dataprep.ShardSet`, the one shard library)
    model       GPT (pre-LN decoder) and BERT (encoder, MLM/NSP heads), size presets
    export      export to Hugging Face `transformers` format
    optim       AdamW parameter groups, warmup + cosine schedule
    checkpoint  atomic checkpoints (one file, or DCP shards under FSDP), keep-last-K,
                checksums, auto-resume
    distributed process group (NCCL on GPU, gloo on CPU) and collective helpers
    train       the training loop and `main` (DDP or FSDP2, gradient accumulation, global loss
                normalization, evaluation, logging, SIGTERM)

The micro-batch contract between `data`, `model` and `loop` (every value a CPU torch tensor,
every micro-batch exactly `micro_batch` rows so shapes never change):

    input_ids       (B, T) int64   token ids (MLM: after masking)
    labels          (B, T) int64   target id per position, -100 where no loss is taken.
                                   CLM: labels[t] = input_ids[t + 1] inside the row's real
                                   tokens; MLM: the original id at masked positions.
    sample_index    (B,)   int64   row id in its split (stable across ranks/workers/resume);
                                   -1 for filler rows (the end of an epoch), whose labels are
                                   all -100
    position_ids    (B, T) int64   CLM with per-document attention only: restart at 0 at
                                   each document start
    doc_ids         (B, T) int64   CLM with per-document attention only: tokens attend (causally)
                                   only to tokens with the same doc id
    attention_mask  (B, T) int64   MLM: 1 on real tokens, 0 on padding
    token_type_ids  (B, T) int64   MLM: 0 for segment A (and padding), 1 for segment B
    nsp_labels      (B,)   int64   MLM: 0 = B follows A, 1 = B is random, -100 = no pair

`model(**batch)` returns loss *sums* (`{"lm": ..., "nsp": ...}`); the loop divides by the global
count of targets of the optimizer step, so any split of a global batch into ranks x micro-batches
gives the same update.
"""
