"""What harness cannot serve correctly is refused by name, before any work, in one line with exit
code 2: encoder-decoder bases without a text-to-text class (speech, vision) in every command that
loads a base, and the chat template on a base whose tokenizer has none."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import message_lines

SUITE = Path(__file__).resolve().parents[2] / "suites" / "korquad_sample.yaml"


def _fake_adapter(root: Path) -> Path:
    """An adapter directory as merge inspects it first (the refusal comes before its weights are read)."""
    adapter = root / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "target_modules": ["q"]}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    return adapter


COMMANDS = {
    "train": lambda ref, root: ["train", "--base", ref, "--set", "training.max_steps=1"],
    "eval": lambda ref, root: ["eval", SUITE, "--base", ref, "--limit", 2],
    "generate": lambda ref, root: ["generate", "--base", ref, "--prompt", "안녕"],
    "chat": lambda ref, root: ["chat", "--base", ref],
    "merge": lambda ref, root: ["merge", "--base", ref, "--adapter", _fake_adapter(root), "--out", root / "export"],
}


# A speech encoder-decoder: transformers has no text-to-text class for it.
WHISPER = '{"model_type": "whisper", "is_encoder_decoder": true, "architectures": ["WhisperForConditionalGeneration"]}'


@pytest.mark.parametrize("command", list(COMMANDS))
def test_encoder_decoder_without_text_class_is_refused(command, run_cli, workdir):
    base = workdir / "whisper"
    base.mkdir()
    (base / "config.json").write_text(WHISPER)
    code, _out, err = run_cli(COMMANDS[command](str(base), workdir))
    lines = message_lines(err)
    assert code == 2, err
    assert len(lines) == 1, "\n".join(lines)
    assert f"{base}: whisper (WhisperForConditionalGeneration) is an encoder-decoder without" in lines[0], lines[0]
    assert not (workdir / "export").exists() and not (workdir / "adapters").exists()


@pytest.mark.parametrize("family", ["gpt-neox", "gpt2", "opt", "bloom"])
def test_chat_without_a_template_is_refused(family, run_cli, workdir):
    code, _out, err = run_cli(["generate", "--base", f"tiny:{family}", "--prompt", "안녕", "--chat"])
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert "chat" in lines[0] and "no chat template" in lines[0], lines[0]


def test_chat_training_without_a_template_is_refused(run_cli, workdir):
    code, _out, err = run_cli(
        ["train", "--base", "tiny:gpt2", "--set", "data.chat=true", "--set", "training.max_steps=1"]
    )
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert "data.chat" in lines[0] and "no chat template" in lines[0], lines[0]
    assert not (workdir / "adapters").exists()


def test_encoder_decoder_hub_id_is_refused(run_subprocess, workdir):
    """A hub id is refused from its config alone, before the weights would be fetched (here from a
    hub cache holding nothing but that config)."""
    snapshot = workdir / "hub" / "models--someone--whisper-ko" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(WHISPER)
    (workdir / "hub" / "models--someone--whisper-ko" / "refs").mkdir()
    (workdir / "hub" / "models--someone--whisper-ko" / "refs" / "main").write_text("0" * 40)
    proc = run_subprocess(
        ["generate", "--base", "someone/whisper-ko", "--prompt", "안녕"], env={"HF_HUB_CACHE": str(workdir / "hub")}
    )
    assert proc.returncode == 2, proc.stderr
    assert "harness generate: error: someone/whisper-ko: whisper (WhisperForConditionalGeneration)" in proc.stderr, (
        proc.stderr
    )
