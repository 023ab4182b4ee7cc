"""Attach adapters to one loaded base (peft named adapters) and switch between them.

The base loads once; each adapter is checked against it before attaching, so a LoRA trained
for another model is refused with a clear line instead of failing deep inside peft.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ModelError, first_line
from harness.model.dense import dense_model
from harness.model.full import FullModel
from harness.model.loading import LoadedBase, base_signature, read_json, resolve_model_ref
from harness.runtime.env import torch_dtype

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass
class AdapterInfo:
    name: str
    path: str
    sha256: str
    config: dict  # adapter_config.json: lora_alpha or target modules change what the weights compute
    train_record: dict | None


@dataclass
class ModelSet:
    """The base and its adapters; `use(name)` yields the model that computes `name`."""

    base: LoadedBase
    adapters: dict[str, AdapterInfo] = field(default_factory=dict)
    peft_model: object | None = None
    base_sha256: str | None = None  # computed on first use (see harness.model.fingerprint)
    full: dict[str, FullModel] = field(default_factory=dict)  # full models with their own load (--model)

    @contextlib.contextmanager
    def dense(self):
        """The base dequantized once for whatever runs inside (see harness.model.dense); adapters stay
        attached, so `use(name)` inside computes every model on it. A full model (`--model`) keeps its own
        weights: the memory the engine planned for is the base's alone."""

        with dense_model(self.base.model, torch_dtype(self.base.compute_dtype)):
            yield

    @contextlib.contextmanager
    def use(self, name: str):
        """The model computing `name`: the base with adapters disabled, that adapter, or a full model."""
        if name in self.full:
            yield self.full[name].loaded.model
            return
        if self.peft_model is None:
            if name != "base":
                raise ModelError(f"no adapter named '{name}' is loaded")
            yield self.base.model
            return
        if name == "base":
            with self.peft_model.disable_adapter():
                yield self.peft_model
        else:
            self.peft_model.set_adapter(name)
            yield self.peft_model

    def base_fingerprint(self, announce=None) -> str:
        """The base's content hash (harness.model.fingerprint), computed once; `announce` as there."""
        if self.base_sha256 is None:
            from harness.model.fingerprint import directory_sha256

            self.base_sha256 = directory_sha256(self.base.path, announce=announce)
        return self.base_sha256

    def identity(self, name: str) -> dict:
        """What produced an output: resume keys on this, never on a path or a name alone: the base by
        the content of its directory, as each adapter by its weights."""
        if name in self.full:
            loaded = self.full[name].loaded
            return {
                "model_sha256": self.full[name].sha256,
                "quantization": loaded.quantization.model_dump(),
                "compute_dtype": loaded.compute_dtype,
            }
        ident = {
            "base_sha256": self.base_fingerprint(),
            "quantization": self.base.quantization.model_dump(),
            "compute_dtype": self.base.compute_dtype,
        }
        if name != "base":
            ident["adapter_sha256"] = self.adapters[name].sha256
            ident["adapter_config"] = self.adapters[name].config
        return ident


def adapter_weights_sha256(path: Path) -> str:
    for filename in WEIGHT_FILES:
        weights = path / filename
        if weights.is_file():
            digest = hashlib.sha256()
            with weights.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
    raise ModelError(f"{path}: no adapter weights ({' or '.join(WEIGHT_FILES)}); point to a trained adapter directory")


def inspect_adapter(name: str, path: str) -> AdapterInfo:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ModelError(f"adapter '{name}': directory {path} not found; check --adapter NAME=PATH")
    if not (directory / "adapter_config.json").is_file():
        raise ModelError(f"adapter '{name}': {path} has no adapter_config.json; point to a peft adapter directory")
    record_file = directory / "train_record.json"
    record = read_json(record_file) if record_file.is_file() else None
    config = read_json(directory / "adapter_config.json")
    for file, value in ((record_file, record), (directory / "adapter_config.json", config)):
        if value is not None and not isinstance(value, dict):
            raise ModelError(
                f"{file}: expected a JSON object, got {type(value).__name__}; restore the file "
                "from the adapter's training (harness train writes both)"
            )
    check_weights_readable(directory)
    return AdapterInfo(
        name=name, path=str(directory), sha256=adapter_weights_sha256(directory), config=config, train_record=record
    )


def check_weights_readable(directory: Path) -> None:
    """A weights file cut short (a copy interrupted, a full disk) fails here in one line, not in peft."""
    weights = directory / WEIGHT_FILES[0]
    if not weights.is_file():
        return
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            names = list(f.keys())
            for name in names[-1:]:  # the last tensor ends the file: a cut file fails here
                f.get_slice(name)
    except (SafetensorError, OSError) as exc:
        raise ModelError(
            f"{weights}: unreadable ({first_line(exc, 160)}); the file is damaged or cut short: copy it again "
            "or train the adapter again"
        ) from None


def check_compatible(info: AdapterInfo, base: LoadedBase) -> None:
    check_against(info, base.ref, base.path, base_signature(base.model))


def check_against(info: AdapterInfo, ref: str, path: str, actual: dict) -> None:
    """Refuse an adapter whose train record names another base or other shapes."""
    record = info.train_record
    if not record:
        return
    named = record.get("base_model")
    same_name = named in {ref, path} or (named is not None and _safe_resolve(named) == path)
    if not same_name:
        raise ModelError(
            f"adapter '{info.name}' ({info.path}) was trained on base '{named}', not '{ref}'; "
            f"use it with --base {named}"
        )
    expected = record.get("base_signature")
    if expected:
        for key, value in expected.items():
            if value is not None and actual.get(key) != value:
                raise ModelError(
                    f"adapter '{info.name}' expects {key}={value} but base '{ref}' has {actual.get(key)}; "
                    f"use the base it was trained on"
                )


def attach_adapters(base: LoadedBase, adapters: dict[str, str]) -> ModelSet:
    infos = {name: inspect_adapter(name, path) for name, path in adapters.items()}
    for info in infos.values():
        check_compatible(info, base)
    model_set = ModelSet(base=base, adapters=infos)
    if infos:
        model_set.peft_model = load_adapters(base.model, list(infos.values()), base.ref)
        model_set.peft_model.eval()
    else:
        base.model.eval()
    return model_set


def load_adapters(model, infos: list[AdapterInfo], ref: str):
    """`model` under peft with each adapter loaded by its name (the first one active); an adapter that
    does not fit the base `ref` is refused in one line."""
    from peft import PeftModel

    peft_model = None
    for info in infos:
        try:
            with warnings.catch_warnings():
                # An adapter trained on a 4-bit GPT-2 saw its Conv1D layers in nn.Linear layout; on the Conv1D
                # itself peft flips fan_in_fan_out to match, which is right, and says so on stderr.
                warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False", category=UserWarning)
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(model, info.path, adapter_name=info.name)
                else:
                    peft_model.load_adapter(info.path, adapter_name=info.name)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelError(
                f"adapter '{info.name}' ({info.path}) does not fit base '{ref}': {first_line(exc)}"
            ) from None
    return peft_model


def _safe_resolve(ref: str) -> str | None:
    try:
        return resolve_model_ref(ref)
    except ModelError:
        return None
