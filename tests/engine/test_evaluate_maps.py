"""The maps evaluation's bookkeeping (amendment 1 of its protocol): a run of the class-score arms joins the
report beside the first run's arms, each trio judged by the protocol's goals, nothing of the first run lost."""

import json

from engine.devtools import evaluate_maps


def _scores(arms, fid, acc10):
    out = {}
    for arm, f, a in zip(arms, fid, acc10, strict=True):
        out.update({f"fid_{arm}": f, f"acc_delta10_{arm}": a, f"kid_{arm}": f / 1000})
    return out


def test_goals_are_judged_for_each_trio_present():
    first = _scores(("model", "l1", "seed_settings"), (296.9, 295.8, 344.0), (0.43, 0.61, 0.28))
    assert evaluate_maps.goals(first) == {"fid_at_least_30_percent_below_l1": False,
                                          "acc_delta10_at_most_1_point_below_l1": False,
                                          "beats_seed_settings_on_fid_and_acc_delta10": True}
    both = dict(first, **_scores(("model_scores", "l1_scores"), (200.0, 290.0), (0.70, 0.705)))
    goals = evaluate_maps.goals(both)
    assert goals["scores_fid_at_least_30_percent_below_l1"] is True  # 200 <= 0.7 x 290
    assert goals["scores_acc_delta10_at_most_1_point_below_l1"] is True  # half a point below
    assert goals["scores_beats_seed_settings_on_fid_and_acc_delta10"] is True
    assert goals["fid_at_least_30_percent_below_l1"] is False  # the first run's goals unchanged
    assert "scores_fid_at_least_30_percent_below_l1" not in evaluate_maps.goals(
        _scores(("model_scores", "l1_scores"), (200.0, 290.0), (0.70, 0.705)))  # no seed arm: no trio


def test_a_later_run_joins_the_section_without_losing_the_first(tmp_path):
    report = tmp_path / "quality.json"
    first = dict(_scores(("model", "l1", "seed_settings"), (296.9, 295.8, 344.0), (0.43, 0.61, 0.28)),
                 test="maps/val: 1098 pairs at 256 px", fid_real_train=52.8,
                 budget={"epochs": 10, "batch": {"model": 4, "l1": 4, "seed_settings": 1},
                         "train_seconds": {"model": 1973.0, "l1": 878.0, "seed_settings": 1143.0}},
                 goals={"fid_at_least_30_percent_below_l1": False}, command="first run", date="then")
    report.write_text(json.dumps({"translate_maps": first, "other": {"kept": 1}}))
    run = dict(_scores(("model_scores", "l1_scores", "seed_settings"), (200.0, 290.0, 344.5), (0.70, 0.705, 0.28)),
               test="maps/val: 1098 pairs at 256 px", fid_real_train=52.8,
               budget={"epochs": 10, "batch": {"model_scores": 4, "l1_scores": 4, "seed_settings": 1},
                       "train_seconds": {"model_scores": 3900.0, "l1_scores": 1700.0, "seed_settings": 1143.0},
                       "palette": {"model_scores": {"#fdfdfb": [253, 253, 251]}}})
    section = evaluate_maps.merged_section(run, report, "second run")
    assert section["fid_model"] == 296.9 and section["fid_model_scores"] == 200.0
    assert section["fid_seed_settings"] == 344.5  # the arm scored again: the latest figure
    assert section["budget"]["train_seconds"] == {"model": 1973.0, "l1": 878.0, "seed_settings": 1143.0,
                                                  "model_scores": 3900.0, "l1_scores": 1700.0}
    assert section["budget"]["palette"]["model_scores"] == {"#fdfdfb": [253, 253, 251]}
    assert section["goals"]["fid_at_least_30_percent_below_l1"] is False
    assert section["goals"]["scores_fid_at_least_30_percent_below_l1"] is True
    assert section["runs"] == ["first run", "second run"] and "date" not in section
    # scores of another test set do not mix
    other = dict(run, test="maps/val: 8 pairs at 256 px")
    assert "fid_model" not in evaluate_maps.merged_section(other, report, "smoke")
