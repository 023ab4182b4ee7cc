"""`harness chat` in a pseudo-terminal (pexpect): two turns, /model, /set, Ctrl-C during a long
answer, /save, Ctrl-D; and in-process (injected streams): history that outgrows the context."""

from __future__ import annotations

import io
import json
import os
import sys
import time

import pexpect
import pytest
from eval_helpers import ADAPTER_NAME

TINY = "tiny:llama-ko"


def test_chat_session_in_a_terminal(gen_adapter, workdir):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "harness",
            "chat",
            "--base",
            TINY,
            "--adapter",
            f"{ADAPTER_NAME}={gen_adapter}",
            "--max-new-tokens",
            "8",
        ],
        cwd=str(workdir),
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 200),
    )
    try:
        child.expect("talking to base")
        child.expect("you> ")
        child.sendline("안녕하세요")
        child.expect("base> ")
        child.expect(r"\(\d+ tokens · [\d.]+ s · [\d.]+ tok/s · stop: ")
        child.expect("you> ")
        child.sendline(f"/model {ADAPTER_NAME}")
        child.expect(f"now talking to {ADAPTER_NAME}")
        child.sendline("/model nope")
        child.expect(f"unknown model 'nope'; loaded: base, {ADAPTER_NAME}")
        child.expect("you> ")
        child.sendline("수도는 어디인가요?")
        child.expect(f"{ADAPTER_NAME}> ")
        child.expect("you> ")
        child.sendline("/set temperature 0")
        child.expect(r"error: /set: field 'temperature': Input should be greater than 0")
        child.sendline("/set beams 2")
        child.expect("'beams' is not a generation field")
        child.sendline("/set max_new_tokens 1900")
        child.expect("max_new_tokens=1900")
        child.sendline("/set min_new_tokens 1900")  # no early eos: the answer is still running at Ctrl-C
        child.expect("min_new_tokens=1900")
        child.expect("you> ")
        child.sendline("긴 이야기를 해 주세요")
        child.expect(f"{ADAPTER_NAME}> ")
        time.sleep(1.0)
        child.sendintr()
        child.expect(r"\[stopped\]")
        child.expect("stop: interrupted")
        child.expect("you> ")  # still in the session
        child.sendline("/save out/chat.json")
        child.expect("saved 6 messages to out/chat.json")
        child.expect("you> ")
        child.sendeof()
        child.expect("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    saved = json.loads((workdir / "out" / "chat.json").read_text(encoding="utf-8"))
    messages = saved["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert [m["content"] for m in messages[::2]] == ["안녕하세요", "수도는 어디인가요?", "긴 이야기를 해 주세요"]
    assert [m["model"] for m in messages[1::2]] == ["base", ADAPTER_NAME, ADAPTER_NAME]
    assert messages[-1]["stop_reason"] == "interrupted" and 0 < messages[-1]["generated_tokens"] < 1900
    assert saved["model"] == ADAPTER_NAME and saved["settings"]["max_new_tokens"] == 1900
    assert saved["adapters"] == {ADAPTER_NAME: str(gen_adapter)}


@pytest.fixture(scope="module")
def base_only(harness_cache):
    from harness.config import Quantization
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    return attach_adapters(load_base(TINY, Quantization(), detect()), {})


def test_history_outgrowing_the_context_drops_oldest_turns(base_only):
    from harness.config import GenerationSettings
    from harness.generate.chat import ChatSession

    # Leave room in the 2048-token context for one turn alone, not for two.
    tokenizer = base_only.base.tokenizer
    one = tokenizer.apply_chat_template(
        [{"role": "user", "content": "두 번째 질문입니다"}], tokenize=False, add_generation_prompt=True
    )
    settings = GenerationSettings(max_new_tokens=2048 - len(tokenizer(one)["input_ids"]) - 2, stop=[" "])
    lines = [
        "첫 번째 질문입니다",
        "두 번째 질문입니다",
        "세 번째 질문입니다 " + "아주 " * 60,
        "/reset",
        "/model base",
        "",
    ]
    out = io.StringIO()
    session = ChatSession(base_only, ["base"], settings, stdin=io.StringIO("\n".join(lines)), stdout=out)
    assert session.run() == 0
    text = out.getvalue()
    assert "dropped the 1 oldest turn(s)" in text, text
    assert "error: your message has" in text and "exceeds the model's context of 2048" in text
    assert "history cleared" in text and "now talking to base" in text and text.rstrip().endswith("bye")
    assert session.history == []


def test_chat_without_chat_template_or_with_bad_settings_is_one_line(gen_error):
    gen_error(["--base", TINY, "--top-k", "-1"], "field 'top_k'", "greater than or equal to 0", command="chat")
    gen_error(["--base", TINY, "--adapter", "base=somewhere"], "reserved", command="chat")
