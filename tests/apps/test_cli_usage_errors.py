"""``finercam evaluate`` and ``finercam demo``: a bad option or a model and data that do not fit
is one line on stderr with exit status 2, nothing written; a bug anywhere in the run (here a
library function made to fail) keeps its exception and traceback, even when it is a
``ValueError``."""
import sys

import pytest
from locations import TESTS  # noqa: E402

from finercam.apps import cli
from finercam.apps.common import UsageError
from finercam.evaluation import EvaluationInputError, evaluate

sys.path.insert(0, str(TESTS))
import evalkit  # noqa: E402

EVALUATE = ["evaluate", "--model", "evalkit:model", "--layer", evalkit.LAYER, "--data",
            "evalkit:dataset", "--methods", "gradcam", "--steps", "4", "--batch-size", "4",
            "--chunk-size", "16", "--limit", "4", "--no-progress"]


def _one_line(capsys, argv, *words, alone=True):
    """``argv`` exits with 2 and its error is one stderr line naming ``words`` (``alone``: the
    only line, nothing was printed before it)."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert err.endswith("\n") and last.startswith(f"finercam {argv[0]}: error: "), err
    assert err.count("error:") == 1 and (err.count("\n") == 1 or not alone), err
    assert all(w in last for w in words), err


@pytest.mark.parametrize("extra, words", [
    (["--gamma", "-1"], ["gamma", "-1"]),
    (["--gammas", "0.2", "nan"], ["gamma", "nan"]),
    (["--steps", "0"], ["steps"]),
    (["--fractions", "1.5"], ["fractions"]),
    (["--methods", "nope"], ["methods", "'nope'"]),
    (["--reference-rule", "nearest"], ["reference_rule", "'nearest'"]),
    (["--aggregations", "median"], ["median"]),
    (["--baseline", "noise"], ["noise"]),
    (["--chunk-size", "0"], ["--chunk-size"]),
    (["--limit", "0"], ["--limit"]),
    (["--layer", "no.such.layer"], ["no.such.layer"]),
    (["--data", "no/such/folder"], ["--data", "no/such/folder"]),
    (["--device", "nonsense"], ["--device"]),
])
def test_evaluate_bad_options_are_one_line_before_anything_is_written(capsys, tmp_path, monkeypatch,
                                                                      extra, words):
    calls = []
    monkeypatch.setattr("finercam.evaluation.runner.first_look",
                        lambda *a, **k: calls.append(a) or pytest.fail("the model was called"))
    _one_line(capsys, [*EVALUATE, *extra, "--out", str(tmp_path / "out")], *words)
    assert not calls and not (tmp_path / "out").exists()


def test_evaluate_a_model_and_data_that_do_not_fit_is_one_line(capsys, tmp_path):
    """Found at the first batch (an EvaluationInputError, a ValueError for library users)."""
    class_names = tmp_path / "names.txt"
    class_names.write_text("\n".join(f"c{k}" for k in range(evalkit.CLASSES + 1)) + "\n")
    _one_line(capsys, [*EVALUATE, "--labels", str(class_names), "--out", str(tmp_path / "out")],
              "6 names but the model has 5 classes")
    assert not (tmp_path / "out").exists()
    with pytest.raises(EvaluationInputError) as err:
        evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=4), labels=["a"] * 6,
                 methods=["gradcam"], steps=4, progress=False, verbose=False)
    assert isinstance(err.value, ValueError) and "6 names" in str(err.value)
    # an out_dir holding another run's configuration
    assert cli.main([*EVALUATE, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    _one_line(capsys, [*EVALUATE, "--gamma", "0.3", "--out", str(tmp_path / "run")],
              "another configuration", alone=False)     # after the plan's line


@pytest.mark.parametrize("where", ["finercam.evaluation.runner.score_batch",
                                   "finercam.evaluation.runner.first_look",
                                   "finercam.evaluation.runner.choose_chunk_size"])
@pytest.mark.parametrize("error", [ValueError, TypeError, FileNotFoundError])
def test_a_bug_in_evaluate_keeps_its_exception_and_traceback(monkeypatch, tmp_path, where, error):
    def bug(*args, **kwargs):
        raise error("an internal bug")

    monkeypatch.setattr(where, bug)
    with pytest.raises(error, match="an internal bug") as raised:
        cli.main([*EVALUATE, "--out", str(tmp_path / "out")])
    assert not isinstance(raised.value, UsageError)
    assert raised.traceback[-1].name == "bug"          # the traceback reaches where it happened
    # while a bad --gamma on the same command line is still one line
    with pytest.raises(error, match="an internal bug"):
        cli.main(EVALUATE)
    assert cli.main([*EVALUATE, "--gamma", "-1"]) == 2


def test_demo_bad_options_are_one_line_and_its_bugs_keep_their_traceback(capsys, tmp_path,
                                                                         monkeypatch):
    _one_line(capsys, ["demo", "--quick", "--images", "4"], "--images", "16")
    _one_line(capsys, ["demo", "--quick", "--steps", "1"], "--steps")
    _one_line(capsys, ["demo", "--quick", "--deletion-images", "17"], "--deletion-images", "[1, --images]")
    _one_line(capsys, ["demo", "--quick", "--seed", "-1"], "--seed")
    (tmp_path / "file").write_text("x")
    _one_line(capsys, ["demo", "--quick", "--out", str(tmp_path / "file")], "--out", "not a folder")

    def bug(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr("finercam.apps.demo.command.load_models", bug)
    with pytest.raises(ValueError, match="an internal bug") as raised:
        cli.main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert not isinstance(raised.value, UsageError)
    assert not (tmp_path / "demo").exists()
