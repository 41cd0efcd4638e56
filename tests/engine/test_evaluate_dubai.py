"""The Dubai evaluation's bookkeeping (amendment 2 of its protocol): the class-loss weight is chosen
by the validation figures of the runs alone, and the scored run joins the report beside arm 1."""

import json

from engine.devtools import evaluate_dubai


def _run(work, val_miou):
    (work / "report_model").mkdir(parents=True)
    (work / "report_model" / "metrics.json").write_text(json.dumps({"final": {"val_miou": val_miou}, "history": []}))
    return work


def test_weight_chosen_by_validation_and_reported_beside_arm_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluate_dubai, "CHOICE", tmp_path / "choice.json")
    runs = [_run(tmp_path / f"class-{w}", m) for w, m in (("0.5", 0.40), ("1", 0.41), ("2", 0.39))]
    assert evaluate_dubai.main(["--choose-lambda-class", *map(str, runs)]) == 0
    choice = json.loads((tmp_path / "choice.json").read_text())
    assert choice["chosen"] == str(runs[1]) and choice["val_miou"][str(runs[2])] == 0.39
    unfinished = tmp_path / "unfinished"
    (unfinished / "report_model").mkdir(parents=True)
    assert evaluate_dubai.main(["--choose-lambda-class", str(runs[0]), str(unfinished)]) == 1

    arms = {"miou_model": 0.49, "pixel_accuracy_model": 0.76, "miou_l1": 0.495, "miou_segmentation_bound": 0.55,
            "miou_trivial": 0.08, "checkerboard_model_resize": 0.97, "checkerboard_l1_resize": 0.98,
            "goals": {"miou_at_least_0.90_of_segmentation": False}}
    resize, transpose, scored = tmp_path / "resize.json", tmp_path / "transpose.json", tmp_path / "class.json"
    resize.write_text(json.dumps(arms))
    transpose.write_text(json.dumps({"miou_model": 0.46, "checkerboard_model_transpose": 2.6}))
    scored.write_text(json.dumps({"miou_model": 0.50, "pixel_accuracy_model": 0.77, "per_class_model": {"land": 0.6},
                                  "budget": {"lambda_class": 1.0}}))
    report = tmp_path / "quality.json"
    assert evaluate_dubai.write_section(resize, transpose, scored, report=report) == 0
    section = json.loads(report.read_text())["translate_dubai"]
    assert section["miou_model"] == 0.49 and section["miou_model_class_loss"] == 0.50  # arm 1 stays
    assert abs(section["goal_model_class_loss_vs_segmentation"] - 0.50 / 0.55) < 1e-12
    assert section["goals"]["class_loss_miou_at_least_0.90_of_segmentation"] is True
    assert section["goals"]["miou_at_least_0.90_of_segmentation"] is False
    assert section["lambda_class"] == 1.0 and section["lambda_class_choice"]["chosen"] == str(runs[1])
    assert "--lambda-class 1 " in section["command"] and "--class-loss" in section["command"]

    # amendment 3: the generator of class scores joins beside arm 1 and amendment 2, with its own choice
    choice_scores = tmp_path / "scores_choice.json"
    monkeypatch.setattr(evaluate_dubai, "CHOICE_SCORES", choice_scores)
    scores_runs = [_run(tmp_path / f"scores-{w}", m) for w, m in (("10", 0.45), ("100", 0.44))]
    assert evaluate_dubai.main(["--choose-lambda-class", *map(str, scores_runs), "--choice", str(choice_scores)]) == 0
    assert json.loads(choice_scores.read_text())["chosen"] == str(scores_runs[0])
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"miou_model": 0.48, "pixel_accuracy_model": 0.78, "per_class_model": {"land": 0.7},
                                  "checkerboard_model_resize": 0.9, "budget": {"lambda_class": 10.0}}))
    assert evaluate_dubai.write_section(resize, transpose, scored, scores, report=report) == 0
    section = json.loads(report.read_text())["translate_dubai"]
    assert section["miou_model"] == 0.49 and section["miou_model_class_loss"] == 0.50
    assert section["miou_model_class_scores"] == 0.48 and section["checkerboard_model_class_scores"] == 0.9
    assert section["lambda_class"] == 1.0 and section["lambda_class_class_scores"] == 10.0
    assert section["lambda_class_class_scores_choice"]["chosen"] == str(scores_runs[0])
    assert section["goals"]["class_scores_miou_at_least_0.90_of_segmentation"] is False  # 0.48 / 0.55
    assert section["goals"]["class_scores_beats_l1_and_trivial"] is False  # 0.48 < L1's 0.495
    assert "--head classes --lambda-class 10 " in section["command"] and "--class-scores" in section["command"]
