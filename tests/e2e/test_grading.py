"""The autograder against the solutions, the skeleton and known-buggy submissions."""
from __future__ import annotations

import pytest

from tests.buggy import BUGS, VARIANTS, make_submission
from tests.conftest import ROOT, by_name, grade


def test_solutions_score_full_marks(solutions_results):
    results, output = solutions_results
    total = sum(t["max_score"] for t in results["tests"])
    assert total >= 85 and results["score"] == total, output[-2000:]
    assert all(t["status"] == "passed" for t in results["tests"])
    assert "Total" in output and f"{total:g}/{total:g}" in output


def test_skeleton_scores_zero_with_not_implemented_messages(skeleton_results):
    results, output = skeleton_results
    assert results["score"] == 0
    for t in results["tests"]:
        assert t["status"] == "failed" and "NotImplementedError: part" in t["output"], t
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert "error" not in output.splitlines()[-1]  # the run ends on failures, not collection errors


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_buggy_submission_loses_the_right_points(bug, tmp_path):
    spec = BUGS[bug]
    extra = ("-k", spec["select"]) if "select" in spec else ()
    results, output = grade(make_submission(bug, tmp_path / bug), tmp_path, *extra)
    tests = by_name(results)
    failing = {}
    for name, t in tests.items():
        keys = [k for k in spec["fails"] if k in name and not any(p in name for p in spec.get("passes_with", []))]
        if keys:
            failing[name] = keys[0]
    assert failing, f"no test matched the expectations of {bug}"
    for name, t in tests.items():
        if name in failing:
            assert t["status"] == "failed" and t["score"] == 0, f"{bug}: {name} should fail"
            wanted = spec["fails"][failing[name]]
            wanted = wanted if isinstance(wanted, tuple) else (wanted,)
            assert any(w in t["output"] for w in wanted), f"{bug}: {name}:\n{t['output']}"
        else:
            assert t["status"] == "passed", f"{bug}: {name} should pass:\n{t['output']}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_correct_variants_score_full_marks_in_the_sandbox(variant, tmp_path):
    results, output = grade(make_submission(variant, tmp_path / variant), tmp_path, "--isolate", "-k", "not part6")
    failed = [t["name"] for t in results["tests"] if t["status"] != "passed"]
    assert results["tests"] and not failed, f"{variant}: {failed[:3]}\n{output[-2000:]}"


def test_wrong_return_type_costs_only_the_loss_test(tmp_path):
    sub = make_submission("gpipe_backward_per_microbatch", tmp_path / "sub")  # any copy of the reference
    text = (ROOT / "solutions" / "schedules.py").read_text()
    old = "    return torch.stack([loss.detach() for loss in losses]).sum().item()"
    assert old in text
    (sub / "schedules.py").write_text(text.replace(old, "    return torch.stack([loss.detach() for loss in losses]).sum()"))
    results, _ = grade(sub, tmp_path, "-k", "gpipe and not part6")
    for name, t in by_name(results).items():
        if "returns the full-batch mean loss" in name:
            assert t["status"] == "failed" and "return the loss as a Python float" in t["output"]
        else:
            assert t["status"] == "passed", f"{name}: {t['output']}"
