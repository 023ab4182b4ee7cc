"""Every reader on a file in its shape: JSON arrays of records, SQuAD/KorQuAD JSON, JSONL (also under a
.json name), CSV, TSV, parquet, `save_to_disk` folders and `datasets.load_dataset` with its options;
`limit` with `sample: first | random`."""

from __future__ import annotations

import json

import pytest

from harness.data.readers import load_dataset
from harness.errors import DataError

RECORDS = [{"question": f"질문 {i}", "answer": f"답 {i}"} for i in range(1, 6)]


def write_json(path, doc):
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return str(path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def plain(examples):
    return [{k: e[k] for k in ("question", "answer")} for e in examples]


def test_json_array_of_records(tmp_path):
    ds = load_dataset(write_json(tmp_path / "d.json", RECORDS))
    assert ds.format == "json" and plain(ds.examples) == RECORDS
    assert [e["id"] for e in ds.examples] == ["1", "2", "3", "4", "5"]


def test_json_lines_under_a_json_name(tmp_path):
    # `datasets`' Dataset.to_json("x.json") writes one object per line.
    ds = load_dataset(write_jsonl(tmp_path / "d.json", RECORDS))
    assert plain(ds.examples) == RECORDS


def test_squad_json_stays_squad(tmp_path):
    doc = {
        "version": "KorQuAD_v1.0",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "서울은 수도다.",
                        "qas": [{"id": "q1", "question": "수도는?", "answers": [{"text": "서울", "answer_start": 0}]}],
                    }
                ],
            }
        ],
    }
    ds = load_dataset(write_json(tmp_path / "k.json", doc))
    assert ds.examples == [
        {
            "id": "q1",
            "title": "t",
            "context": "서울은 수도다.",
            "question": "수도는?",
            "answers": ["서울"],
            "answer": "서울",
        }
    ]


@pytest.mark.parametrize(
    "doc, said", [({"rows": []}, "is not a dataset"), ([{"a": 1}, 5], "item [1]"), ("text", "is not a dataset")]
)
def test_json_of_no_known_shape_is_a_one_line_error(tmp_path, doc, said):
    with pytest.raises(DataError) as err:
        load_dataset(write_json(tmp_path / "d.json", doc))
    message = str(err.value)
    assert "\n" not in message and "d.json" in message and said in message
    assert "list of records" in message and "SQuAD" in message and "json, squad or jsonl" in message


def test_jsonl(tmp_path):
    assert plain(load_dataset(write_jsonl(tmp_path / "d.jsonl", RECORDS)).examples) == RECORDS


@pytest.mark.parametrize("name, delimiter", [("d.csv", ","), ("d.tsv", "\t")])
def test_csv_and_tsv(tmp_path, name, delimiter):
    lines = [f"question{delimiter}answer"] + [f"{r['question']}{delimiter}{r['answer']}" for r in RECORDS]
    (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_dataset(str(tmp_path / name))
    assert ds.format == name[-3:] and plain(ds.examples) == RECORDS


def test_parquet(tmp_path):
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(RECORDS), tmp_path / "d.parquet")
    ds = load_dataset(str(tmp_path / "d.parquet"))
    assert ds.format == "parquet" and plain(ds.examples) == RECORDS


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "one"))
    assert plain(load_dataset(str(tmp_path / "one")).examples) == RECORDS
    both = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(RECORDS[:3]), "test": datasets.Dataset.from_list(RECORDS[3:])}
    )
    both.save_to_disk(str(tmp_path / "dict"))
    ds = load_dataset(str(tmp_path / "dict"), split="test")
    assert ds.format == "disk" and plain(ds.examples) == RECORDS[3:]
    with pytest.raises(DataError, match=r"no split 'validation'.*splits are: train, test"):
        load_dataset(str(tmp_path / "dict"), split="validation")


def test_folder_with_data_files_and_config_name_reach_datasets(tmp_path):
    """name and data_files go to datasets.load_dataset: a script-less local folder with two subsets."""
    folder = tmp_path / "repo"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    write_jsonl(folder / "a" / "train.jsonl", RECORDS[:2])
    write_jsonl(folder / "b" / "train.jsonl", RECORDS[2:])
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: a\n  data_files: a/*.jsonl\n- config_name: b\n  data_files: b/*.jsonl\n---\n"
    )
    by_name = load_dataset(str(folder), split="train", hub={"name": "b"})
    assert by_name.format == "hub" and plain(by_name.examples) == RECORDS[2:]
    by_files = load_dataset(str(folder), split="train", hub={"data_files": "a/train.jsonl"})
    assert plain(by_files.examples) == RECORDS[:2]
    json_builder = load_dataset("json", split="train", hub={"data_files": str(folder / "b" / "train.jsonl")})
    assert plain(json_builder.examples) == RECORDS[2:]


def test_missing_hub_dataset_offline_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_dataset("nobody-here/no-such-dataset", split="train", hub={"name": "ko", "revision": "v1"})
    message = str(err.value)
    assert "\n" not in message and message.startswith("nobody-here/no-such-dataset: cannot load dataset")
    assert "name ko" in message and "revision v1" in message


def test_limit_first_takes_the_first_in_file_order(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    assert plain(load_dataset(path, limit=2, sample="first").examples) == RECORDS[:2]


def test_limit_random_is_the_seeded_sample_it_always_was(tmp_path):
    """The default draw, pinned: existing configs keep their examples (and so their run ids)."""
    import random

    path = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    expected = [RECORDS[i] for i in sorted(random.Random(7).sample(range(5), 3))]
    assert plain(load_dataset(path, limit=3, seed=7).examples) == expected
    assert plain(load_dataset(path, limit=3, seed=7, sample="random").examples) == expected
