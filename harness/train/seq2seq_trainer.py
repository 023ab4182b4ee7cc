"""transformers' Seq2SeqTrainer for an encoder-decoder base, where TRL's SFTTrainer (decoder-only) does
not apply: source → target examples tokenized here, batches padded by DataCollatorForSeq2Seq (labels
padded with -100, so the loss is on the target's tokens only), the same TrainingArguments as the SFT
path, and the probe the train record keeps."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from harness.config import TrainConfig
from harness.model.families import decoder_start
from harness.model.probe import prompt_logits
from harness.train.plan import Plan
from harness.train.seq2seq import source_length, target_length
from harness.train.trainer import training_arguments, watch_trainer

IGNORE_INDEX = -100  # transformers' label for a position without loss
PROBE_TOKENS = 256


class SourceTargetTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer counting source and target tokens as seen: the Trainer alone counts the encoder's
    (its attention mask), which would leave out half of what a step computes on."""

    def _track_num_input_tokens(self, inputs):
        super()._track_num_input_tokens(inputs)
        if self.args.include_num_input_tokens_seen == "no" or "labels" not in inputs:
            return
        target = torch.as_tensor((inputs["labels"] != IGNORE_INDEX).sum(), device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += self.accelerator.gather(target).sum().item()


def build_seq2seq_trainer(
    config: TrainConfig, plan: Plan, model, tokenizer, rows: tuple[list, list], out: Path, report: bool
):
    """The Seq2SeqTrainer `run_training` runs, like trainer.build_trainer for SFTTrainer."""
    train_rows, val_rows = rows
    args = Seq2SeqTrainingArguments(
        **training_arguments(config, plan, out, has_validation=bool(val_rows)),
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,  # the rows hold the model's inputs and labels only
    )
    trainer = SourceTargetTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=collator(tokenizer),
        train_dataset=tokenize(train_rows, tokenizer, config),
        eval_dataset=tokenize(val_rows, tokenizer, config) if val_rows else None,
    )
    return watch_trainer(trainer, model, out, config, report)


def tokenize(rows: list[dict], tokenizer, config: TrainConfig):
    """{prompt, completion} rows → a Dataset of the source's input_ids and attention_mask and the target's
    tokens as labels, each with the tokenizer's own special tokens (T5's </s>, BART's <s> … </s>) and cut
    at data.max_source_length / max_target_length."""
    from datasets import Dataset

    source = tokenizer([r["prompt"] for r in rows], truncation=True, max_length=source_length(config))
    target = tokenizer(text_target=[r["completion"] for r in rows], truncation=True, max_length=target_length(config))
    return Dataset.from_dict(
        {"input_ids": source["input_ids"], "attention_mask": source["attention_mask"], "labels": target["input_ids"]}
    )


def collator(tokenizer) -> DataCollatorForSeq2Seq:
    """Pads a batch's sources with the pad token (on the right: BART's learned positions count from the
    first token) and its labels with -100; the model builds its decoder inputs by shifting the labels."""
    tokenizer.padding_side = "right"
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)


def probe_logits(model, tokenizer, text: str):
    """The encoder-decoder's probe: (source token count, decoder start ids, the logits of the target's
    first token) for `text` as a source, with the tokenizer's special tokens as in training."""
    ids = tokenizer(text, truncation=True, max_length=PROBE_TOKENS, return_tensors="pt").input_ids
    start = [decoder_start(model)]
    return int(ids.shape[1]), start, prompt_logits(model, ids, torch.tensor([start]))[-1]
