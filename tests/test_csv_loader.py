"""CSV + YAML schema loader: good files, every user error, missing values,
categorical layout, single-class hospitals, and the shipped example."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from fl_client.data import (
    ConfigError,
    DataError,
    DataWarning,
    EmptyFileError,
    InvalidValuesError,
    MissingColumnError,
    MissingFileError,
    NonNumericValueError,
    SchemaError,
    SingleClassStudyError,
    UnexpectedColumnError,
    UnknownCategoryError,
    load_hospital,
    load_hospitals,
)
from fl_client.data.csv_schema import load_schema, parse_schema

REPO = Path(__file__).resolve().parents[1]

SCHEMA = {
    "target": {"column": "num", "positive": "> 0"},
    "numeric": ["age"],
    "categorical": {"cp": [1, 2, 3]},
    "missing_values": ["?", ""],
    "drop": ["note"],
    "missing_rows": "drop",
    "test_fraction": 0.25,
}

GOOD = "age,cp,num,note\n40,1,0,a\n50,2,1,b\n60,3,2,c\n70,1,0,d\n30,2,1,e\n45,3,0,f\n55,1,3,g\n65,2,0,h\n"


def _study(tmp_path, files: dict[str, str], schema=None, **cfg_extra):
    schema_path = tmp_path / "schema.yaml"
    schema_path.write_text(yaml.safe_dump(SCHEMA if schema is None else schema))
    hospitals = []
    for hid, text in files.items():
        p = tmp_path / f"{hid}.csv"
        if text is not None:
            p.write_text(text)
        hospitals.append({"id": hid, "path": str(p)})
    return {"name": "csv", "schema": str(schema_path), "hospitals": hospitals, **cfg_extra}


def _load(cfg, n=None, seed=0):
    return load_hospitals(cfg, len(cfg["hospitals"]) if n is None else n, seed)


def test_good_file_loads_with_schema_layout(tmp_path):
    cfg = _study(tmp_path, {"a": GOOD, "b": GOOD})
    hs = _load(cfg)
    h = hs[0]
    assert h.hospital_id == "a"
    assert h.feature_names == ["age", "cp=1", "cp=2", "cp=3"]
    assert (h.n_train, h.n_test) == (6, 2)
    assert sorted(np.concatenate([h.y_train, h.y_test]).tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    onehot = np.concatenate([h.X_train, h.X_test])[:, 1:]
    assert np.all(onehot.sum(axis=1) == 1.0)
    assert load_hospital(cfg, 1, 2, 0) == hs[1]


def test_numeric_standardised_with_own_train_stats_only(tmp_path):
    from itertools import combinations

    ages = [40, 50, 60, 70, 30, 45, 55, 65]
    h = _load(_study(tmp_path, {"a": GOOD}))[0]
    # Find the 6 training ages: the only subset whose own mean/std map the
    # training column back onto it, and the test column onto the other 2.
    matches = []
    for train in combinations(ages, 6):
        m, s = np.mean(train), np.std(train)
        test = sorted(set(ages) - set(train))
        if np.allclose(sorted(h.X_train[:, 0] * s + m), sorted(train), atol=1e-3) and np.allclose(
            sorted(h.X_test[:, 0] * s + m), test, atol=1e-3
        ):
            matches.append(train)
    assert len(matches) == 1


def test_categorical_layout_identical_with_different_local_categories(tmp_path):
    only_1 = "age,cp,num,note\n40,1,0,a\n50,1,1,b\n60,1,0,c\n70,1,1,d\n"
    only_3 = "num,cp,age,note\n0,3,40,a\n1,3,50,b\n0,3,60,c\n1,3,70,d\n"  # other column order too
    h1, h3 = _load(_study(tmp_path, {"h1": only_1, "h3": only_3}))
    assert h1.feature_names == h3.feature_names == ["age", "cp=1", "cp=2", "cp=3"]
    X1, X3 = np.concatenate([h1.X_train, h1.X_test]), np.concatenate([h3.X_train, h3.X_test])
    assert np.all(X1[:, 1] == 1) and np.all(X1[:, 2:] == 0)
    assert np.all(X3[:, 3] == 1) and np.all(X3[:, 1:3] == 0)


def test_missing_tokens_drop_rows(tmp_path):
    text = "age,cp,num,note\n40,1,0,a\n?,2,1,b\n60, ,0,c\n70,1,1,d\n30,2,0,e\n45,3,1,f\n"
    with pytest.warns(DataWarning, match="dropped 2 row"):
        h = _load(_study(tmp_path, {"a": text}))[0]
    assert h.n_train + h.n_test == 4


def test_missing_tokens_impute_with_train_mean(tmp_path):
    schema = {**SCHEMA, "missing_rows": "impute_mean"}
    text = "age,cp,num,note\n40,1,0,a\n?,2,1,b\n60,?,0,c\n70,1,1,d\n30,2,0,e\n45,3,1,f\n"
    h = _load(_study(tmp_path, {"a": text}, schema=schema))[0]
    X = np.concatenate([h.X_train, h.X_test])
    assert h.n_train + h.n_test == 6
    assert np.isfinite(X).all()
    assert (X[:, 0] == 0.0).sum() >= 1  # imputed age = train mean -> 0 after standardising
    assert (X[:, 1:].sum(axis=1) == 0).sum() == 1  # missing category -> all-zero one-hot


def test_missing_target_row_is_dropped(tmp_path):
    text = GOOD + "50,1,?,z\n"
    with pytest.warns(DataWarning, match="missing target 'num'"):
        h = _load(_study(tmp_path, {"a": text}))[0]
    assert h.n_train + h.n_test == 8


def test_missing_file_error_names_hospital_and_path(tmp_path):
    cfg = _study(tmp_path, {"a": GOOD, "ghost": None})
    with pytest.raises(MissingFileError, match=r"'ghost'.*ghost\.csv"):
        _load(cfg)


def test_missing_schema_file(tmp_path):
    cfg = _study(tmp_path, {"a": GOOD})
    cfg["schema"] = str(tmp_path / "nope.yaml")
    with pytest.raises(MissingFileError, match="nope.yaml"):
        _load(cfg)


def test_missing_column_error_names_file_and_column(tmp_path):
    text = "age,num,note\n40,0,a\n50,1,b\n"
    with pytest.raises(MissingColumnError, match=r"a\.csv: missing column\(s\) 'cp' \(categorical\)"):
        _load(_study(tmp_path, {"a": text}))


def test_unlisted_column_error_suggests_drop(tmp_path):
    text = "age,cp,num,note,bmi\n40,1,0,a,22\n50,2,1,b,23\n"
    with pytest.raises(UnexpectedColumnError, match=r"\['bmi'\].*drop"):
        _load(_study(tmp_path, {"a": text}))


def test_non_numeric_value_names_file_line_column_value(tmp_path):
    text = "age,cp,num,note\n40,1,0,a\n50,2,1,b\nfifty,3,0,c\n"
    with pytest.raises(
        NonNumericValueError,
        match=r"a\.csv: 1 unreadable value\(s\) in 1 column\(s\): column 'age' \(numeric\): not a number at line 4 'fifty'",
    ):
        _load(_study(tmp_path, {"a": text}))


def _refused(tmp_path, text: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        _load(_study(tmp_path, {"a": text}))


def test_non_numeric_target_under_numeric_rule(tmp_path):
    text = "age,cp,num,note\n40,1,0,a\n50,2,sick,b\n"
    _refused(
        tmp_path, text, NonNumericValueError, r"column 'num' \(target, rule '> 0'\): not a number at line 3 'sick'"
    )


def test_unknown_category_error_and_ignore(tmp_path):
    text = "age,cp,num,note\n40,1,0,a\n50,9,1,b\n60,2,0,c\n70,1,1,d\n"
    with pytest.raises(
        UnknownCategoryError,
        match=r"a\.csv: .*column 'cp': not in the schema's categories \['1', '2', '3'\] at line 3 '9'",
    ):
        _load(_study(tmp_path, {"a": text}))
    with pytest.warns(DataWarning, match="unknown: ignore"):
        h = _load(_study(tmp_path, {"a": text}, schema={**SCHEMA, "unknown": "ignore"}))[0]
    X = np.concatenate([h.X_train, h.X_test])
    assert (X[:, 1:].sum(axis=1) == 0).sum() == 1


@pytest.mark.parametrize("text", ["", "age,cp,num,note\n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(EmptyFileError, match=r"a\.csv"):
        _load(_study(tmp_path, {"a": text}))


def test_single_class_across_study_is_an_error(tmp_path):
    neg = "age,cp,num,note\n40,1,0,a\n50,2,0,b\n60,3,0,c\n"
    with pytest.warns(DataWarning), pytest.raises(SingleClassStudyError, match="matched no row"):
        _load(_study(tmp_path, {"a": neg, "b": neg}))


def test_single_class_hospital_warns_and_still_loads(tmp_path):
    pos = "age,cp,num,note\n40,1,1,a\n50,2,2,b\n60,3,1,c\n70,1,4,d\n"
    cfg = _study(tmp_path, {"mixed": GOOD, "allpos": pos})
    with pytest.warns(DataWarning, match="allpos: its data .* single class"):
        hs = _load(cfg)
    assert hs[1].classes_present == [1] and hs[1].n_train == 3 and hs[1].n_test == 1
    with pytest.warns(DataWarning, match="allpos"):
        alone = load_hospital(cfg, 1, 2, 0)  # a lone client cannot see the others: warning only
    assert alone == hs[1]


def test_num_hospitals_must_match_files(tmp_path):
    cfg = _study(tmp_path, {"a": GOOD, "b": GOOD})
    with pytest.raises(ConfigError, match=r"num_hospitals=3 but dataset.hospitals lists 2 file.*set num_hospitals=2"):
        load_hospitals(cfg, 3, 0)


@pytest.mark.parametrize(
    "schema, match",
    [
        ({**SCHEMA, "numerci": ["age"]}, r"unknown key\(s\) \['numerci'\]"),
        ({k: v for k, v in SCHEMA.items() if k != "target"}, "missing required key 'target'"),
        ({**SCHEMA, "target": {"column": "num"}}, r"missing required key 'target.positive'"),
        ({**SCHEMA, "target": {"column": "num", "positive": "~ 3"}}, "not a known rule"),
        ({**SCHEMA, "target": {"column": "num", "positive": "> high"}}, "needs a number"),
        ({**SCHEMA, "missing_rows": "fill"}, "missing_rows must be"),
        ({**SCHEMA, "categorical": {"cp": [True, False]}}, "quote"),
        ({**SCHEMA, "numeric": ["age", "cp"]}, "both numeric and categorical"),
        ({**SCHEMA, "test_fraction": 1.5}, "test_fraction"),
    ],
)
def test_bad_schema_fails_fast(schema, match):
    with pytest.raises(SchemaError, match=match):
        parse_schema(schema, source="s.yaml")


def test_schema_bad_yaml_names_file(tmp_path):
    p = tmp_path / "schema.yaml"
    p.write_text("target: {column: num, positive: '> 0'\nnumeric: [age\n")
    with pytest.raises(SchemaError, match=r"schema\.yaml: not valid YAML"):
        load_schema(p)


@pytest.mark.parametrize(
    "rule, positives",
    [("> 1", [2, 3]), (">= 1", [1, 2, 3]), ("== 0", [0]), ("in [1, 3]", [1, 3]), ([2], [2])],
)
def test_target_rules(rule, positives):
    t = parse_schema({**SCHEMA, "target": {"column": "num", "positive": rule}}).target
    assert [v for v in ["0", "1", "2", "3"] if t.positive(v)] == [str(p) for p in positives]


def test_text_labels_rule():
    t = parse_schema({**SCHEMA, "target": {"column": "dx", "positive": ["sick", "very sick"]}}).target
    assert t.positive(" sick") and t.positive("very sick") and not t.positive("healthy")


def test_all_errors_share_one_base():
    for cls in (
        SchemaError,
        MissingFileError,
        EmptyFileError,
        MissingColumnError,
        NonNumericValueError,
        UnknownCategoryError,
        SingleClassStudyError,
        ConfigError,
    ):
        assert issubclass(cls, DataError)


def test_shipped_config_and_example_load():
    cfg = yaml.safe_load((REPO / "conf/dataset/csv.yaml").read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hs = load_hospitals(cfg, 3, seed=0)
    assert [h.hospital_id for h in hs] == ["cleveland", "hungary", "switzerland"]
    assert len({tuple(h.feature_names) for h in hs}) == 1 and hs[0].n_features == 20
    assert hs[2].classes_present == [1]
    assert any("switzerland" in str(w.message) and "single class" in str(w.message) for w in caught)


def test_every_bad_value_of_a_file_is_listed_in_one_error(tmp_path):
    # arrange: two non-numbers in 'age' (lines 3, 5), one in the target (line 4), an unknown category (line 6)
    text = "age,cp,num,note\n40,1,0,a\nforty,2,1,b\n50,3,sick,c\nx,1,0,d\n60,7,1,e\n"
    # act
    with pytest.raises(InvalidValuesError) as exc:
        _load(_study(tmp_path, {"a": text}))
    # assert: one error, of neither single kind, naming all four cells with their lines
    assert type(exc.value) is InvalidValuesError
    message = str(exc.value)
    assert "4 unreadable value(s) in 3 column(s)" in message and "\n" not in message
    assert "line 3 'forty', line 5 'x'" in message and "line 4 'sick'" in message and "line 6 '7'" in message
    assert len(exc.value.problems) == 3


def test_many_bad_values_of_one_column_are_counted_after_the_first_five(tmp_path):
    rows = "".join(f"bad{i},1,0,n\n" for i in range(8))
    with pytest.raises(NonNumericValueError, match=r"8 unreadable.*line 6 'bad4' and 3 more\. To fix"):
        _load(_study(tmp_path, {"a": "age,cp,num,note\n" + rows}))


def test_every_missing_column_is_named_at_once(tmp_path):
    text = "num,note,bmi\n0,a,1\n1,b,2\n"
    _refused(
        tmp_path, text, MissingColumnError, r"'age' \(numeric\), 'cp' \(categorical\).*not in the schema: \['bmi'\]"
    )


def test_a_target_rule_that_matches_nothing_shows_the_values_seen(tmp_path):
    # arrange: labels yes/no, rule == Yes (case differs)
    schema = {**SCHEMA, "target": {"column": "num", "positive": "== Yes"}}
    text = "age,cp,num,note\n40,1,yes,a\n50,2,no,b\n60,3,no,c\n70,1,yes,d\n80,2,no,e\n"
    # act / assert
    with (
        pytest.warns(DataWarning, match=r"rule '== Yes', whose values are 'no' \(3\), 'yes' \(2\)"),
        pytest.raises(
            SingleClassStudyError,
            match=r"rule '== Yes' on column 'num' matched no row of the study's 2 hospital\(s\); the values seen "
            r"are 'no' \(6\), 'yes' \(4\) \(labels compare exactly, case included: did you mean 'yes'\?\)",
        ),
    ):
        _load(_study(tmp_path, {"a": text, "b": text}, schema=schema))


def test_the_bad_values_of_every_hospital_file_are_named_in_one_error(tmp_path):
    # arrange: hospital a has a non-number at line 3, hospital b one at line 2, hospital c is fine
    bad_a = "age,cp,num,note\n40,1,0,a\nforty,2,1,b\n"
    bad_b = "age,cp,num,note\nfifty,1,0,a\n50,2,1,b\n"
    # act
    with pytest.raises(NonNumericValueError) as exc:
        _load(_study(tmp_path, {"a": bad_a, "b": bad_b, "c": GOOD}))
    # assert: one error of the common class, both files and cells named, one problem per file
    message = str(exc.value)
    assert message.startswith("2 of the study's 3 hospital files have errors: ")
    assert "a.csv: 1 unreadable" in message and "line 3 'forty'" in message
    assert "b.csv: 1 unreadable" in message and "line 2 'fifty'" in message
    assert len(exc.value.problems) == 2


def test_different_errors_in_different_files_are_one_data_error(tmp_path):
    with pytest.raises(DataError, match=r"2 of the study's 2 hospital files.*missing column.*\| .*ghost") as exc:
        _load(_study(tmp_path, {"a": "age,num,note\n40,0,a\n", "ghost": None}))
    assert type(exc.value) is DataError
