from mtldiag.analysis.diagnose import diagnose


def run(loss=None, norms=None, pairs=None):
    return {
        "loss_mean": loss or {"a": 1.0, "b": 1.0},
        "grad_norm_mean": norms or {"a": 1.0, "b": 1.0},
        "pairs": pairs or [],
    }


def pair(rate, cos, neg, layers=None, a="a", b="b"):
    return {
        "a": a,
        "b": b,
        "conflict_rate": rate,
        "cosine_mean": cos,
        "conflict_cosine_mean": neg,
        "gms_mean": 0.9,
        "layers": layers or {},
    }


def codes(findings):
    return [f["code"] for f in findings]


def test_balanced_run_has_no_issue():
    assert codes(diagnose(run(pairs=[pair(0.1, 0.4, -0.05)]), ["l0"])) == ["no_issue"]


def test_loss_scale_names_dominant_task_ratio_and_severity():
    (f,) = [
        x
        for x in diagnose(run(loss={"a": 250.0, "b": 2.5}), [])
        if x["code"] == "loss_scale_imbalance"
    ]
    assert f["evidence"]["dominant"] == "a" and f["evidence"]["ratio"] == 100.0
    assert f["severity"] == "critical" and "init_loss" in f["suggestion"]
    (g,) = [x for x in diagnose(run(loss={"a": 2.0, "b": 30.0}), [])]
    assert g["severity"] == "warning" and g["evidence"]["dominant"] == "b"
    assert codes(diagnose(run(loss={"a": 9.0, "b": 1.0}), [])) == ["no_issue"]


def test_loss_scale_at_the_start_counts_when_the_mean_has_shrunk():
    r = run(loss={"a": 11.0, "b": 1.0})
    r["initial_loss"] = {"a": 100.0, "b": 1.0}
    (f,) = [x for x in diagnose(r, []) if x["code"] == "loss_scale_imbalance"]
    assert f["severity"] == "critical" and f["evidence"]["ratio"] == 100.0
    assert f["evidence"]["ratio_mean"] == 11.0 and "at the start" in f["message"]
    r["initial_loss"] = {"a": 5.0, "b": 1.0}  # smaller at the start: the mean is judged
    (g,) = [x for x in diagnose(r, []) if x["code"] == "loss_scale_imbalance"]
    assert g["severity"] == "warning" and g["evidence"]["ratio"] == 11.0
    assert "at the start" not in g["message"]


def test_grad_norm_dominance_threshold():
    assert "grad_norm_dominance" in codes(diagnose(run(norms={"a": 5.0, "b": 1.0}), []))
    assert "grad_norm_dominance" not in codes(diagnose(run(norms={"a": 4.9, "b": 1.0}), []))


def test_strong_conflict_flagged_weak_sign_noise_is_not():
    strong = diagnose(run(pairs=[pair(0.7, -0.3, -0.45)]), [])
    assert codes(strong)[0] == "directional_conflict" and strong[0]["severity"] == "critical"
    noise = diagnose(run(pairs=[pair(0.5, 0.0, -0.03)]), [])
    assert "directional_conflict" not in codes(noise) and "near_orthogonal" in codes(noise)
    # A negative mean cosine is a conflict even when the rate is modest.
    assert "directional_conflict" in codes(diagnose(run(pairs=[pair(0.2, -0.2, -0.5)]), []))


def test_location_says_branch_earlier_when_conflict_sits_deep():
    layers = ["t0", "t1", "t2"]
    deep = {
        "t0": {"conflict_rate": 0.1, "cosine_mean": 0.3},
        "t1": {"conflict_rate": 0.2, "cosine_mean": 0.2},
        "t2": {"conflict_rate": 0.9, "cosine_mean": -0.4},
    }
    out = diagnose(run(pairs=[pair(0.8, -0.3, -0.4, deep)]), layers)
    loc = next(f for f in out if f["code"] == "conflict_location")
    assert loc["evidence"]["concentrated_deep"] is True and "branching" in loc["suggestion"]
    spread = {k: {"conflict_rate": 0.8, "cosine_mean": -0.3} for k in layers}
    out = diagnose(run(pairs=[pair(0.8, -0.3, -0.4, spread)]), layers)
    loc = next(f for f in out if f["code"] == "conflict_location")
    assert loc["evidence"]["concentrated_deep"] is False
