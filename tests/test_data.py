from collections import Counter

import pytest

from mtl_tutorial.config import DataConfig
from mtl_tutorial.data import (
    FETCH_COMMAND,
    DataNotFoundError,
    _normalise,
    clean,
    load_raw,
    load_splits,
    main,
)


def test_no_movie_in_two_splits(splits):
    movies = {name: {s.movie for s in splits[name]} for name in ("train", "val", "test")}
    assert not movies["train"] & movies["val"]
    assert not movies["train"] & movies["test"]
    assert not movies["val"] & movies["test"]


def test_no_snippet_text_in_two_splits(splits):
    texts = {name: {_normalise(s.text) for s in splits[name]} for name in ("train", "val", "test")}
    assert not texts["train"] & texts["val"]
    assert not texts["train"] & texts["test"]
    assert not texts["val"] & texts["test"]


def test_split_counts(splits):
    """The cleaned corpus: 13,905 rows, 14 empty, 57 repeated texts; about 80/10/10 by snippet."""
    report = splits.report
    assert report.raw_rows == 13_905
    assert report.empty_text == 14
    assert report.duplicate_text == 57
    assert report.kept == 13_905 - 14 - 57
    counts = splits.counts()
    total = sum(counts[n]["total"] for n in counts)
    assert total == report.kept
    assert 0.76 < counts["train"]["total"] / total < 0.84
    for name in ("val", "test"):
        assert 0.07 < counts[name]["total"] / total < 0.13
        assert min(counts[name]["fresh"], counts[name]["rotten"], counts[name]["plot"]) > 50


def test_same_name_films_are_merged(splits):
    merged = splits.report.merged_movie_ids
    assert ("el_crimen_del_padre_amaro", "the_crime_of_padre_amaro") in merged


def test_split_is_seeded():
    a, b = load_splits(DataConfig(split_seed=3)), load_splits(DataConfig(split_seed=3))
    c = load_splits(DataConfig(split_seed=4))
    assert [s.text for s in a.test] == [s.text for s in b.test]
    assert [s.text for s in a.test] != [s.text for s in c.test]


def test_clean_on_hand_made_rows():
    rows = [
        {"category": "fresh", "text": "Great  fun.", "movie_name": "a"},
        {"category": "fresh", "text": "great fun.", "movie_name": "b"},  # same text, other id
        {"category": "plot", "text": "   ", "movie_name": "c"},  # empty
        {"category": "rotten", "text": "Dull.", "movie_name": "c"},
    ]
    snippets, report = clean(rows)
    assert [s.text for s in snippets] == ["Great fun.", "Dull."]
    assert report.empty_text == 1 and report.duplicate_text == 1
    assert report.merged_movie_ids == [("a", "b")]
    assert len({s.movie for s in snippets}) == 2


def test_missing_data_names_the_fetch_command(tmp_path):
    with pytest.raises(DataNotFoundError, match=FETCH_COMMAND.replace(".", r"\.")):
        load_raw(tmp_path)


def test_unknown_split_name(splits):
    with pytest.raises(KeyError, match="valid splits are: train, val, test"):
        splits["dev"]


def test_cli_rejects_unknown_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["download"])
    assert info.value.code == 2
    assert "fetch" in capsys.readouterr().err


def test_bad_split_fractions():
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(val_fraction=0.7)


def test_label_counts_match_the_corpus():
    raw = Counter(r["category"] for r in load_raw() if r["text"].strip())
    assert raw == {"fresh": 7403, "rotten": 5405, "plot": 1097 - 14}
