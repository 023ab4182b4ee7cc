"""harness's choice task scores as lm-evaluation-harness's HF backend does, proved by running
lm-evaluation-harness (the version pinned in the `test` extra) itself beside `harness eval`.

A KoBEST-COPA-like task (two multi-token choices, the gold given as its text) and a KMMLU-like one
(four single-letter choices, the gold as `answer - 1`), each with few-shot examples drawn from a dev
file (COPA's shares one example with the evaluated split, as real splits sometimes do: only a draw
from the evaluated split leaves the sample out) and from the evaluated split itself, on tiny models
of families whose tokenizers treat special tokens differently: tiny:llama-ko (has a BOS its
tokenizer does not add), tiny:llama2 (adds BOS), tiny:gpt2 (BOS and eos are one token, none added)
and tiny:qwen2 (no BOS: eos stands for it).

Both sides see the same weights: harness loads the base in 4-bit NF4 (its default) and lm-evaluation-
harness is handed the same base loaded by transformers with the same BitsAndBytesConfig, and, for
the LoRA column, a peft PeftModel of it. Every sample's context (few-shot examples included) must be
the same text, every choice's log-likelihood equal up to float32 rounding, and acc/acc_norm identical
(lm-evaluation-harness reports them in 0-1, harness in 0-100). The KMMLU-like choices are one token
each, so lm-evaluation-harness scores them from one shared forward (its one-token-continuation
grouping) and harness from a forward per choice: the numbers must agree all the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import quiet
from support import one_torch_thread

pytest.importorskip(
    "lm_eval", reason="lm-evaluation-harness is not installed (it comes with the test extra: pip install -e '.[test]')"
)
pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parent / "parity"
# lm-evaluation-harness sums float32 log-probabilities (harness float64): at -100 a float32 step is ~1e-5.
TOLERANCE = dict(abs=1e-5, rel=1e-6)
ADAPTER = "lora"

# Each task in both tools' words: harness's `choice` section and lm-evaluation-harness's doc_to_*.
COPA_CONTEXT = "{{premise}} {% if question == '원인' %}왜냐하면{% else %}그래서{% endif %}"
COPA_GOLD = "alternative_1 if label == 0 else alternative_2"
KMMLU_CONTEXT = "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n정답："
TASKS = {
    "copa": dict(
        choice={"context": COPA_CONTEXT, "choices": "[alternative_1, alternative_2]", "gold": COPA_GOLD},
        lm_eval={
            "doc_to_text": COPA_CONTEXT,
            "doc_to_choice": "{{[alternative_1, alternative_2]}}",
            "doc_to_target": "{{" + COPA_GOLD + "}}",
        },
    ),
    "kmmlu": dict(
        choice={"context": KMMLU_CONTEXT, "choices": ["A", "B", "C", "D"], "gold": "answer - 1"},
        lm_eval={"doc_to_text": KMMLU_CONTEXT, "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "{{answer-1}}"},
    ),
}
# suite name → (task, k, few-shot examples from the dev file or from the evaluated split itself)
SUITES = {
    "copa_dev": ("copa", 2, "dev"),
    "copa_self": ("copa", 2, "test"),
    "kmmlu_dev": ("kmmlu", 3, "dev"),
    "kmmlu_self": ("kmmlu", 2, "test"),
}


def harness_suite(name: str, base: str, engine: str, adapter: Path | None, out: Path):
    from harness.config import SuiteConfig, load_config

    task, k, split = SUITES[name]
    fewshot = {"k": k, **({"path": str(DATA / f"{task}_dev.jsonl")} if split == "dev" else {})}
    suite = {
        "name": name,
        "task": "choice",
        "dataset": {"path": str(DATA / f"{task}_test.jsonl")},
        "choice": TASKS[task]["choice"],
        "prompt": {"fewshot": fewshot},
        "metrics": ["acc", "acc_norm"],
        "engine": engine,
        "batch_size": 4,
        "models": {"base": base, "adapters": {ADAPTER: str(adapter)} if adapter else {}},
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(suite, ensure_ascii=False), encoding="utf-8")
    return load_config(SuiteConfig, path, {}), str(path)


def lm_eval_task(name: str, cache: Path) -> dict:
    task, k, split = SUITES[name]
    files = {"test": str(DATA / f"{task}_test.jsonl"), "dev": str(DATA / f"{task}_dev.jsonl")}
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files, "cache_dir": str(cache)},
        "output_type": "multiple_choice",
        "test_split": "test",
        "fewshot_split": split,
        "num_fewshot": k,
        **TASKS[task]["lm_eval"],
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }


def run_harness(names, base: str, engine: str, adapter: Path | None, out: Path) -> dict:
    """{(suite, model column): {"records": [...], "results": results.json}} of `harness eval` runs."""
    from harness.evaluate.run import run_eval

    got = {}
    for name in names:
        suite = harness_suite(name, base, engine, adapter, out)
        with one_torch_thread():
            result = run_eval(*suite, out_root=out / engine, run_id=name, log=quiet, progress_bars=False)
        run = Path(result.run_dir)
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        for column in ["base", *([ADAPTER] if adapter else [])]:
            lines = (run / "records" / f"{column}.jsonl").read_text(encoding="utf-8").splitlines()
            got[name, column] = {"records": [json.loads(x) for x in lines], "results": results}
    return got


def run_lm_eval(model, tokenizer, names, cache: Path) -> dict:
    """{suite: lm-evaluation-harness's output for that task} with its per-sample log."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    with one_torch_thread():
        out = simple_evaluate(
            model=lm,
            tasks=[lm_eval_task(n, cache) for n in names],
            task_manager=TaskManager(include_defaults=False),
            log_samples=True,
            bootstrap_iters=0,
            fewshot_random_seed=1234,  # both tools' default, said here since the draws must match
            # The global generators stay as the session left them (log-likelihoods draw nothing).
            random_seed=None,
            numpy_random_seed=None,
            torch_random_seed=None,
        )
    return {n: {"samples": out["samples"][n], "results": out["results"][n]} for n in names}


def tokenizer(ref: str):
    from transformers import AutoTokenizer

    from harness.model.tiny import tiny_model_path

    return AutoTokenizer.from_pretrained(tiny_model_path(ref))


def lm_eval_model(ref: str, adapter: Path | None = None):
    """The base as lm-evaluation-harness is handed it: loaded by transformers with the BitsAndBytesConfig
    harness loads it with on a CPU (NF4, double quantization, float32 compute), and a peft PeftModel of it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from harness.model.tiny import tiny_model_path

    nf4 = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path(ref), quantization_config=nf4, dtype=torch.float32)
    # On a CPU with AVX512-BF16, bitsandbytes would repack the 4-bit weights for a kernel that computes
    # in bf16 whatever compute_dtype says; harness turns that off so a base scores the same always.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return PeftModel.from_pretrained(model, str(adapter)).eval() if adapter else model.eval()


def random_lora(ref: str, out: Path) -> Path:
    """A LoRA adapter made by peft alone, at random (B not zero) so that it moves every score."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.model.tiny import tiny_model_path

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path(ref), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


def assert_same(harness_run: dict, lm_eval_run: dict, column: str) -> None:
    """Per sample: the same context (few-shot examples included) and choices; per choice: the same
    log-likelihood (to TOLERANCE) and greedy flag; acc and acc_norm per sample and over the suite."""
    records = harness_run["records"]
    samples = sorted(lm_eval_run["samples"], key=lambda s: s["doc_id"])
    assert [r["id"] for r in records] == [s["doc"]["id"] for s in samples]
    for record, sample in zip(records, samples):
        where = record["id"]
        assert [a[0] for a in sample["arguments"]] == [record["prompt"]] * len(record["choices"]), where
        assert [a[1] for a in sample["arguments"]] == [" " + c for c in record["choices"]], where
        scores = [float(ll) for ll, _ in sample["filtered_resps"]]
        assert record["loglikelihoods"] == pytest.approx(scores, **TOLERANCE), where
        assert record["is_greedy"] == [bool(g) for _, g in sample["filtered_resps"]], where
        target = sample["target"]  # doc_to_target's value: an index or a choice's text
        assert record["gold"] == [record["choices"].index(target) if isinstance(target, str) else target], where
        for metric in ("acc", "acc_norm"):
            assert record["metrics"][metric] == 100 * sample[metric], (where, metric)
    ours = harness_run["results"]["metrics"][column]
    for metric in ("acc", "acc_norm"):
        assert ours[metric]["value"] == pytest.approx(100 * lm_eval_run["results"][f"{metric},none"]), metric


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory) -> Path:
    """Where `datasets`' json builder keeps the sample files it reads for lm-evaluation-harness."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def lora(tmp_path_factory, harness_cache) -> Path:
    return random_lora("tiny:llama-ko", tmp_path_factory.mktemp("parity-lora") / ADAPTER)


@pytest.fixture(scope="module")
def llama_ko_expected(lora, datasets_cache) -> dict:
    """lm-evaluation-harness's runs of tiny:llama-ko, base and adapter columns (both engines compare to them)."""
    ref = "tiny:llama-ko"
    expected = {"base": run_lm_eval(lm_eval_model(ref), tokenizer(ref), SUITES, datasets_cache)}
    expected[ADAPTER] = run_lm_eval(lm_eval_model(ref, lora), tokenizer(ref), SUITES, datasets_cache)
    return expected


@pytest.mark.parametrize("engine", ["plain", "fast"])
def test_base_and_lora_score_as_lm_eval(engine, lora, llama_ko_expected, tmp_path):
    """tiny:llama-ko, base and a LoRA adapter, on both engines: the 4-bit base with peft (plain) and the
    base dequantized once with the adapter kept unmerged (fast, harness's default)."""
    got = run_harness(SUITES, "tiny:llama-ko", engine, lora, tmp_path)
    for name in SUITES:
        for column in ("base", ADAPTER):
            assert_same(got[name, column], llama_ko_expected[column][name], column)


@pytest.mark.parametrize("ref", ["tiny:llama2", "tiny:gpt2", "tiny:qwen2"])
def test_other_families_score_as_lm_eval(ref, datasets_cache, tmp_path):
    """Families whose tokenizers add BOS (Llama-2), share it with eos (GPT-2) or have none (Qwen2)."""
    got = run_harness(SUITES, ref, "auto", None, tmp_path)
    expected = run_lm_eval(lm_eval_model(ref), tokenizer(ref), SUITES, datasets_cache)
    for name in SUITES:
        assert_same(got[name, "base"], expected[name], "base")


@pytest.mark.parametrize("ref", ["tiny:llama-ko", "tiny:llama2", "tiny:gpt2", "tiny:qwen2", "tiny:t5", "tiny:bart-ko"])
def test_requests_score_as_lm_eval(ref):
    """Requests no suite above makes, straight to both engines on one float32 model: an empty context
    (the prefix token stands for it), a context's trailing spaces (they move to the continuation), a
    text that starts with the prefix token's own text (no second one is added); on the decoder-only
    families and on encoder-decoders (lm-evaluation-harness's seq2seq backend)."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from harness.engine.requests import LoglikelihoodRequest, RunOptions
    from harness.engine.run import run_requests
    from harness.model.tiny import tiny_model_path

    auto = AutoModelForSeq2SeqLM if ref in ("tiny:t5", "tiny:bart-ko") else AutoModelForCausalLM
    model = auto.from_pretrained(tiny_model_path(ref), dtype=torch.float32).eval()
    ours = tokenizer(ref)
    prefix = ours.bos_token or ours.eos_token
    pairs = [
        ("", "빈 문맥에서 시작하는 글"),
        ("", prefix + "로 시작하는 글"),
        ("질문: 한국의 수도는? 답:  ", "서울"),
        ("질문: 한국의 수도는? 답:", " 서울"),
        (prefix + "한국어 문맥", " 이어지는 글"),
    ]
    if auto is AutoModelForCausalLM:  # longer than the model's context: both keep the row's end
        pairs.append(("가나다라 " * (model.config.max_position_embeddings // 2), " 마바사"))
    requests = [LoglikelihoodRequest(*p) for p in pairs]
    got = {"auto": {}, "plain": {}}
    with one_torch_thread():
        for engine, results in got.items():
            run_requests(model, ours, requests, RunOptions(batch_size=2, engine=engine), results.__setitem__)
        lm = HFLM(pretrained=model, tokenizer=tokenizer(ref), batch_size=2)
        expected = lm.loglikelihood(
            [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], disable_tqdm=True
        )
    for engine, results in got.items():
        for i, (logprob, greedy) in enumerate(expected):
            assert results[i].logprob == pytest.approx(logprob, **TOLERANCE), (engine, pairs[i])
            assert results[i].is_greedy == greedy, (engine, pairs[i])
