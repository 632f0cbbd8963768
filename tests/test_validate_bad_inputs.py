"""Bad input to gates and A/B tests: each error names what was wrong."""
import numpy as np
import pandas as pd
import pytest
import yaml

from churnops import validate as V
from churnops.config import ConfigError, Gate, config_from_dict
from churnops import tracking


def test_gate_name_that_is_not_a_metric():
    with pytest.raises(ValueError, match="gate 'acuracy': not a metric"):
        V.check_gates({"accuracy": 0.9}, {"acuracy": Gate(min=0.8)})
    with pytest.raises(ConfigError, match="offline_gates.f2: unknown metric"):
        config_from_dict({"offline_gates": {"f2": {"min": 0.5}}})


@pytest.mark.parametrize("name,gate", [("recall", {"min": 75}), ("roc_auc", {"min": -0.1}), ("precision", {"min": 0.5, "target": 1.5})])
def test_rate_threshold_outside_unit_interval(name, gate):
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        V.check_gates({name: 0.9}, {name: Gate(**gate)})


def test_gate_direction_contradicting_the_metric():
    with pytest.raises(ValueError, match="log_loss is lower-is-better; expected direction 'max'"):
        V.check_gates({"log_loss": 0.3}, {"log_loss": Gate(min=0.5)})
    with pytest.raises(ValueError, match="expected direction 'min'"):
        V.check_gates({"roc_auc": 0.9}, {"roc_auc": Gate(min=0.5, direction="max")})


def test_missing_and_non_numeric_metrics_fail_not_pass():
    rep = V.check_gates({"accuracy": None, "recall": "n/a", "precision": float("inf")},
                        {"accuracy": Gate(min=0.8), "recall": Gate(min=0.7), "precision": Gate(min=0.7), "roc_auc": Gate(min=0.8)})
    df = rep.to_frame()
    assert not rep.passed and not df.passed.any()
    assert df.loc["roc_auc", "reason"] == "missing" and df.loc["accuracy", "reason"] == "missing"
    assert df.loc["recall", "reason"] == "not a number" and df.loc["precision", "reason"] == "not a number"
    assert "FAIL  roc_auc" in str(rep) and "missing" in str(rep)


VARIANTS = {"control": {"model_version": 1, "traffic": 50}, "treatment": {"model_version": 2, "traffic": 50}}


@pytest.mark.parametrize("shares,msg", [((60, 30), "sum to 100, found 90"), ((70, 40), "sum to 100, found 110"),
                                        ((150, -50), "less than or equal to 100")])
def test_shares_not_summing_to_100(shares, msg):
    v = {"a": {"model_version": 1, "traffic": shares[0]}, "b": {"model_version": 2, "traffic": shares[1]}}
    with pytest.raises(ValueError, match=msg):
        V.ABTestConfig(experiment="e", variants=v)
    if min(shares) >= 0 and max(shares) <= 100:
        with pytest.raises(ValueError, match="sum to 100"):
            V.assign_variant("e", 1, {"a": shares[0], "b": shares[1]})


def test_ab_config_file_errors_name_file_and_key(tmp_path):
    p = tmp_path / "ab.yaml"
    p.write_text(yaml.safe_dump({"experiment": "e", "variants": VARIANTS, "min_sampel_size": 10}))
    with pytest.raises(ValueError, match=r"ab.yaml: invalid A/B test config\n  min_sampel_size: Extra inputs"):
        V.load_ab_config(p)
    with pytest.raises(FileNotFoundError, match="not found"):
        V.load_ab_config(tmp_path / "missing.yaml")
    p.write_text(yaml.safe_dump({"experiment": "has space", "variants": VARIANTS}))
    with pytest.raises(ValueError, match="experiment"):
        V.load_ab_config(p)


def _outcomes(n=400):
    rng = np.random.default_rng(0)
    ids = np.arange(n)
    return pd.DataFrame({"customer_id": ids, "variant": [V.assign_variant("e", i, {"control": 50, "treatment": 50}) for i in ids],
                         "churned": rng.binomial(1, 0.1, n)})


def test_ab_table_with_unknown_variant_or_missing_columns():
    ab = V.ABTestConfig(experiment="e", variants=VARIANTS, min_sample_size=10)
    df = _outcomes()
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['treatment_b'\]"):
        V.analyze_ab(df.assign(variant=np.where(df.index < 5, "treatment_b", df.variant)), ab)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['churned'\]"):
        V.analyze_ab(df.drop(columns="churned"), ab)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['customer_id', 'variant'\]"):
        V.analyze_ab(df[["churned"]], ab)
    with pytest.raises(ValueError, match="must be 0/1 per customer, found 2"):
        V.analyze_ab(df.assign(churned=df.churned + np.where(df.index == 3, 2, 0)), ab)
    with pytest.raises(ValueError, match="one row per customer"):
        V.analyze_ab(pd.concat([df, df.iloc[:1].assign(variant="treatment" if df.variant[0] == "control" else "control")]), ab)


def test_ab_underpowered_and_missing_arm_declare_no_winner():
    ab = V.ABTestConfig(experiment="e", variants=VARIANTS, min_sample_size=1000)
    df = _outcomes()
    res = V.analyze_ab(df, ab)
    assert res.decision == "underpowered" and "no winner declared" in res.reasons[0]
    res = V.analyze_ab(df[df.variant == "control"], ab.model_copy(update={"min_sample_size": 1}))
    assert res.decision == "underpowered" and "treatment has 0" in res.reasons[0]


def test_bootstrap_and_slices_bad_inputs():
    y = np.array([0, 1, 0, 1]); p = np.array([0.1, 0.8, 0.3, 0.6])
    with pytest.raises(ValueError, match="length mismatch"):
        V.paired_bootstrap(y, p, p[:3])
    with pytest.raises(ValueError, match="unknown comparison metric"):
        V.paired_bootstrap(y, p, p, metrics=["auc"])
    with pytest.raises(ValueError, match=r"segment column\(s\) \['plan'\] not in the holdout"):
        V.slice_metrics(pd.DataFrame({"region": list("abab")}), y, {"c": p}, segments=["plan"])
    with pytest.raises(ValueError, match="integer version"):
        tracking.parse_model_ref("churn/v2")


def test_ab_guardrails_from_a_prediction_log_and_cli_errors(tmp_path, capsys):
    from churnops.cli import main
    rng = np.random.default_rng(1)
    n = 8000
    ids = np.arange(n)
    shares = {"control": 50, "treatment": 50}
    variant = np.array([V.assign_variant("g", i, shares) for i in ids])
    out = pd.DataFrame({"customer_id": ids, "variant": variant, "churned": rng.binomial(1, np.where(variant == "control", 0.12, 0.08))})
    log = pd.DataFrame({"variant": variant, "latency_ms": rng.gamma(2, 5, n),
                        "status": np.where((variant == "treatment") & (rng.random(n) < 0.05), 503, 200)})
    ab = V.ABTestConfig(experiment="g", variants=VARIANTS, min_sample_size=500, baseline_rate=0.12, mde=0.04)
    res = V.analyze_ab(out, ab, requests=log)
    g = res.guardrails.set_index(["variant", "guardrail"])
    assert not g.loc[("treatment", "error_rate"), "passed"] and g.loc[("control", "error_rate"), "passed"]
    assert res.comparisons.loc["treatment", "verdict"] == "better"
    assert res.decision == "guardrail breached: treatment is better on churned but fails error_rate"
    cfg = tmp_path / "ab.yaml"
    cfg.write_text(yaml.safe_dump(ab.model_dump(mode="json")))
    out.assign(variant=np.where(ids == 0, "c", variant)).to_csv(tmp_path / "o.csv", index=False)
    assert main(["ab", "analyze", "--home", str(tmp_path), "--config", str(cfg), "--outcomes", str(tmp_path / "o.csv")]) == 1
    assert "unknown variant(s) ['c']" in capsys.readouterr().err
    assert main(["ab", "assign", "--home", str(tmp_path), "--config", str(cfg), "17", "42"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == f"17\t{V.assign_variant('g', 17, shares)}" and lines[1] == f"42\t{V.assign_variant('g', 42, shares)}"
