"""A saved folder's tokenizer.json in the form every tokenizers release reads (transformers 4.42 ships tokenizers 0.19,
which fails on the [left, right] merge pairs that tokenizers >= 0.20 writes); `make compat` loads it there."""

import json
import logging

from conftest import make_tokenizer

from convert_to_nvembed import make_tokenizer_config_portable, write_bpe_merges_as_strings


TEXTS = ["gzip compresses files with the deflate algorithm", "  the fox\n", "Instruct: a task\nQuery:\n"]


def saved_tokenizer(path):
    tokenizer = make_tokenizer()
    tokenizer.save_pretrained(path)
    return tokenizer


def merges(path):
    return json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]


def test_merges_become_strings_and_tokenize_the_same(tmp_path):
    from transformers import PreTrainedTokenizerFast

    original = saved_tokenizer(tmp_path)
    pairs = merges(tmp_path)
    assert pairs and all(isinstance(m, list) for m in pairs)  # what tokenizers >= 0.20 writes
    make_tokenizer_config_portable(tmp_path)
    assert merges(tmp_path) == [f"{left} {right}" for left, right in pairs]
    reloaded = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in TEXTS:
        assert reloaded(text)["input_ids"] == original(text)["input_ids"], text
    write_bpe_merges_as_strings(tmp_path / "tokenizer.json")  # strings already: left as they are
    assert merges(tmp_path) == [f"{left} {right}" for left, right in pairs]


def test_merge_with_a_space_keeps_pairs_and_says_so(tmp_path, caplog):
    saved_tokenizer(tmp_path)
    path = tmp_path / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model"]["merges"][0] = ["a b", "c"]  # cannot be written as "a b c": the legacy form splits on the space
    path.write_text(json.dumps(data), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="convert_to_nvembed"):
        write_bpe_merges_as_strings(path)
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["merges"] == data["model"]["merges"]
    assert "transformers >= 4.45" in caplog.text
