"""The stopping rule on plain numbers: no network, no Trainer."""

import math

import pytest

from skae._stopping import CONTINUE, CUT_LEARNING_RATE, STOP, StoppingRule


def _actions(rule, criteria):
    return [rule.update(value).action for value in criteria]


def test_stalls_cut_the_learning_rate_then_stop():
    rule = StoppingRule(tol=0.0, n_iter_no_change=2, lr_reductions=1)
    # 1 improves on -inf; three stalls exceed n_iter_no_change=2: cut; three more: stop.
    actions = _actions(rule, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert actions == [CONTINUE, CONTINUE, CONTINUE, CUT_LEARNING_RATE,
                       CONTINUE, CONTINUE, STOP]


def test_without_reductions_the_first_stall_stops():
    rule = StoppingRule(tol=0.0, n_iter_no_change=1, lr_reductions=0)
    assert _actions(rule, [1.0, 0.5, 0.5]) == [CONTINUE, CONTINUE, STOP]


def test_progress_resets_the_count():
    rule = StoppingRule(tol=0.0, n_iter_no_change=2, lr_reductions=0)
    assert _actions(rule, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]) == [
        CONTINUE, CONTINUE, CONTINUE, CONTINUE, CONTINUE, CONTINUE, STOP]


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_relative_tolerance_is_the_same_at_any_scale(scale):
    criteria = [-10.0, -9.5, -9.45, -9.44, -9.43]
    rule = StoppingRule(tol=0.01, n_iter_no_change=5)
    verdicts = [rule.update(value * scale).improved for value in criteria]
    # -9.5 beats -10 by 5% (> 1%); -9.45 beats -9.5 by 0.5% (< 1%), ...
    assert verdicts == [True, True, False, False, False]


def test_absolute_tolerance():
    rule = StoppingRule(tol=0.1, n_iter_no_change=5, relative=False)
    assert [rule.update(v).improved for v in [0.0, 0.05, 0.2, 0.25]] == [
        True, False, True, False]


def test_a_best_below_the_margin_is_still_the_best():
    """An epoch that beats the best by less than tol is no progress, but its
    weights are the best so far (early stopping keeps them)."""
    rule = StoppingRule(tol=0.5, n_iter_no_change=5, best=1.0)
    verdict = rule.update(1.2)
    assert verdict.best and not verdict.improved and rule.best == 1.2
    verdict = rule.update(1.1)
    assert not verdict.best and not verdict.improved and rule.best == 1.2


def test_the_starting_point_is_a_candidate():
    rule = StoppingRule(tol=0.0, n_iter_no_change=5, best=3.0)
    assert not rule.update(2.0).best
    assert math.isclose(rule.best, 3.0)
