"""`harness chat`: an interactive conversation with the base or any loaded adapter.

The model's chat template carries the history; answers stream through the same engine as
`harness eval` and `harness generate` (`harness.engine.generation.generate_stream`). Commands:
`/model NAME` switches model without reloading, `/set FIELD VALUE` changes a generation
setting (validated like a suite's), `/reset` clears the history, `/save FILE` writes the
conversation as JSON. Ctrl-C stops the current answer and keeps the session; Ctrl-D leaves.

Input and output streams are injectable, so the loop runs in tests without a terminal.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from harness.config.generation import GenerationSettings, check_field, format_value, with_overrides
from harness.data.prompts import apply_chat_template
from harness.engine.model_info import encoder_decoder
from harness.errors import ConfigError, HarnessError, ModelError, describe

HELP_TEXT = """commands:
  /model [NAME]       show the loaded models, or switch to NAME (history is kept)
  /set [FIELD VALUE]  show the generation settings, or change one (e.g. /set temperature 0.7)
  /reset              clear the conversation history
  /save FILE          write the conversation as JSON
  /help               this list
Ctrl-C stops the current answer; Ctrl-D (or /quit) leaves."""


class ChatSession:
    def __init__(
        self,
        models,
        names: list[str],
        settings: GenerationSettings,
        stdin=None,
        stdout=None,
        system: str | None = None,
        engine: str = "auto",
    ):
        self.models = models
        self.engine = engine
        self.names = names
        self.model = names[0]
        self.settings = settings
        self.system = system
        self.history: list[dict] = []  # {"role", "content"} (+ "model", "stop_reason", ... for answers)
        self.stdin = stdin or sys.stdin
        self.out = stdout or sys.stdout
        self.tokenizer = models.base.tokenizer
        self._stop = threading.Event()

    # ------------------------------------------------------------- loop

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def read(self, prompt: str) -> str | None:
        """One line of input; None at end of input (Ctrl-D)."""
        if self.stdin is sys.stdin and self.out is sys.stdout and sys.stdin.isatty():
            try:
                return input(prompt)
            except EOFError:
                return None
        self.say(prompt, end="")
        # Bytes where the stream has them: a line that is not UTF-8 is refused alone, and the next one reads.
        line = self.stdin.buffer.readline() if hasattr(self.stdin, "buffer") else self.stdin.readline()
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        return None if line == "" else line.rstrip("\n").rstrip("\r")

    def run(self) -> int:
        self.say(
            f"harness chat: {', '.join(self.names)} loaded; talking to {self.model}. "
            "/help lists commands, Ctrl-D leaves."
        )
        while True:
            try:
                line = self.read("you> ")
            except KeyboardInterrupt:
                self.say("\n(Ctrl-D leaves)")
                continue
            except UnicodeDecodeError as exc:
                self.say(
                    f"error: that line is not UTF-8 text (byte {exc.start}); type it again (the conversation is kept)"
                )
                continue
            if line is None:
                self.say("\nbye")
                return 0
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not self.command(line):
                        return 0
                else:
                    self.answer(line)
            except KeyboardInterrupt:
                self.say("\n[stopped]")
            except HarnessError as exc:
                self.say(f"error: {exc}")
            except Exception as exc:
                self.say(
                    f"\nerror: {describe(exc)}; the conversation is kept (/set to change a setting, "
                    "/save FILE to keep it)"
                )

    # ------------------------------------------------------------- commands

    def command(self, line: str) -> bool:
        """Run a /command; False to leave."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in {"/quit", "/exit"}:
            self.say("bye")
            return False
        if name == "/help":
            self.say(HELP_TEXT)
        elif name == "/model":
            self.switch(rest)
        elif name == "/set":
            self.set(rest)
        elif name == "/reset":
            self.history.clear()
            self.say("history cleared")
        elif name == "/save":
            self.save(rest)
        else:
            self.say(f"unknown command {name}; /help lists them")
        return True

    def switch(self, name: str) -> None:
        if not name:
            self.say("models: " + ", ".join(f"*{n}" if n == self.model else n for n in self.names))
            return
        if name not in self.names:
            self.say(f"unknown model '{name}'; loaded: {', '.join(self.names)}")
            return
        self.model = name
        self.say(f"now talking to {name} (history kept)")

    def set(self, rest: str) -> None:
        import yaml

        if not rest:
            self.say(", ".join(f"{k}={format_value(v)}" for k, v in self.settings.model_dump().items()))
            return
        field, _, text = rest.partition(" ")
        field = field.replace("-", "_")
        try:
            check_field(field, "/set")
            if not text.strip():
                raise ConfigError(
                    f"/set {field}: give a value, e.g. /set {field} "
                    f"{format_value(GenerationSettings.model_fields[field].get_default(call_default_factory=True))}"
                )
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = text
            if field == "stop" and not isinstance(value, list):
                value = [str(value)]
            self.settings = with_overrides(self.settings, {field: value}, "/set")
        except ConfigError as exc:
            self.say(f"error: {exc}")
            return
        self.say(f"{field}={format_value(getattr(self.settings, field))}")

    def save(self, path: str) -> None:
        if not path:
            self.say("/save needs a file name, e.g. /save chat.json")
            return
        data = {
            "base": self.models.base.ref,
            "adapters": {n: a.path for n, a in self.models.adapters.items()},
            "model": self.model,
            "system": self.system,
            "settings": self.settings.model_dump(mode="json"),
            "messages": self.history,
        }
        try:
            file = Path(path).expanduser()
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            self.say(f"error: cannot write {path} ({exc.strerror or exc}); choose another path")
            return
        self.say(f"saved {len(self.history)} messages to {path}")

    # ------------------------------------------------------------- answering

    def messages(self, user: str, history: list[dict]) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return (
            system
            + [{"role": m["role"], "content": m["content"]} for m in history]
            + [{"role": "user", "content": user}]
        )

    def fit(self, user: str, limit: int | None) -> tuple[str, int] | None:
        """The prompt with as much history as fits the context; drops the oldest turns first."""

        if not getattr(self.tokenizer, "chat_template", None):
            apply_chat_template(self.tokenizer, user)  # raises the one-line error
        dropped = 0
        while True:
            prompt = self.tokenizer.apply_chat_template(
                self.messages(user, self.history), tokenize=False, add_generation_prompt=True
            )
            tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])  # the template wrote them
            if not limit or tokens + self.settings.max_new_tokens <= limit:
                break
            if not self.history:
                self.say(
                    f"error: your message has {tokens} tokens with the chat template; with max_new_tokens="
                    f"{self.settings.max_new_tokens} it exceeds the model's context of {limit}; "
                    "shorten it or /set max_new_tokens lower"
                )
                return None
            # One turn: the oldest user message and the answer that followed it.
            self.history.pop(0)
            while self.history and self.history[0]["role"] != "user":
                self.history.pop(0)
            dropped += 1
        return prompt, dropped

    def answer(self, user: str) -> None:
        from harness.engine.generation import context_length, generate_stream

        with self.models.use(self.model) as model:
            fitted = self.fit(user, context_length(model))
            if fitted is None:
                return
            prompt, dropped = fitted
            if dropped:
                self.say(f"(history outgrew the context: dropped the {dropped} oldest turn(s))")
            self.say(f"{self.model}> ", end="")
            self._stop.clear()
            previous = self._install_sigint()
            try:
                generated = generate_stream(
                    model,
                    self.tokenizer,
                    prompt,
                    self.settings,
                    lambda text: self.say(text, end=""),
                    should_stop=self._stop.is_set,
                    engine=self.engine,
                    chat=True,
                )
            finally:
                self._restore_sigint(previous)
        interrupted = self._stop.is_set()
        rate = generated.generated_tokens / generated.time_s if generated.time_s else 0.0
        stop = (
            "interrupted"
            if interrupted
            else ("hit max_new_tokens" if generated.stop_reason == "length" else generated.stop_reason)
        )
        self.say(
            ("\n[stopped]" if interrupted else "")
            + f"\n  ({generated.generated_tokens} tokens · {generated.time_s:.2f} s · {rate:.1f} tok/s · stop: {stop})"
        )
        self.history.append({"role": "user", "content": user})
        self.history.append(
            {
                "role": "assistant",
                "content": generated.output,
                "model": self.model,
                "stop_reason": "interrupted" if interrupted else generated.stop_reason,
                "generated_tokens": generated.generated_tokens,
            }
        )

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGINT, lambda signum, frame: self._stop.set())

    def _restore_sigint(self, previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def refuse_encoder_decoder(ref: str, model, tokenizer) -> None:
    """An encoder-decoder without a chat template (T5, BART) has no conversation format to render: say
    so by name, and where its single-prompt answers are, rather than the generic missing-template line."""
    if encoder_decoder(model) and not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"--base {ref}: {type(model).__name__} is an encoder-decoder without a chat template, so there "
            "is no conversation to hold; answer single prompts with harness generate --prompt TEXT"
        )
