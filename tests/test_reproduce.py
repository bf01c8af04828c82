"""experiment.reproduce: the step scheduler and the table's comparisons (the stages themselves have their own
smoke tests; `make demo` runs the whole protocol)."""
import json
import os

import pytest

from experiment.reproduce_table import comparison_specs, zero_std_comparison
from experiment.runner import Runner, Step

REQUIRED = {"grpo_vs_base", "rest_vs_naive", "rest_round2_vs_round1", "rest_rl_vs_vm_mcts@8",
            *(f"vm_mcts_vs_{other}@{budget}" for other in ("orm_bon", "vm_bon", "orm_mcts") for budget in (4, 8, 16))}


def append(name: str, path: str) -> list[str]:
    """A step command that appends its name to a file after a short wait (so that order is observable)."""
    return ["python", "-c", f"import time; time.sleep(0.3); open({path!r}, 'a').write({name!r} + '\\n')"]


def test_steps_run_after_their_dependencies_two_at_a_time(tmp_path):
    order = str(tmp_path / "order.txt")
    (tmp_path / "kept").write_text("")
    steps = [Step("c", "third", append("c", order), after=("a", "b")),
             Step("a", "first", append("a", order)),
             Step("b", "second", append("b", order)),
             Step("skipped", "already done", append("skipped", order), done="kept"),
             Step("d", "after the skipped one", append("d", order), after=("skipped",))]
    runner = Runner(str(tmp_path), threads=1, parallel=2)
    runner.run(steps)
    lines = open(order).read().split()
    assert sorted(lines) == ["a", "b", "c", "d"] and lines.index("c") > max(lines.index("a"), lines.index("b"))
    assert set(runner.seconds) == {"a", "b", "c", "d"}
    commands = (tmp_path / "commands.sh").read_text()
    assert commands.count("\n# ") + commands.startswith("# ") == 4 and "skipped" not in commands.split("# third")[0]
    assert os.path.exists(tmp_path / "logs" / "a.log")


def test_a_failing_step_stops_the_run_and_names_its_log(tmp_path):
    steps = [Step("bad", "fails", ["python", "-c", "import sys; print('boom'); sys.exit(3)"]),
             Step("later", "never runs", ["python", "-c", "open('later', 'w')"], after=("bad",))]
    with pytest.raises(SystemExit, match=r"step bad \(fails\) failed with exit 3; its log is .*logs/bad.log"):
        Runner(str(tmp_path), threads=1, parallel=2).run(steps)
    assert "boom" in (tmp_path / "logs" / "bad.log").read_text() and not (tmp_path / "later").exists()


def test_the_table_holds_every_comparison_the_issue_names():
    assert REQUIRED <= set(comparison_specs([4, 8, 16], 8))


def test_zero_std_difference_is_paired_by_step():
    naive, rest = [0.75, 0.5, 0.75, 0.625] * 10, [0.5, 0.25, 0.5, 0.375] * 10
    result = zero_std_comparison(naive, rest, seed=0)
    assert result["difference"] == pytest.approx(0.25) and result["ci95"] == [0.25, 0.25]
    assert result["resolved"] and result["n_problems"] == 40 and json.dumps(result)


def test_the_demo_config_is_the_reproduce_config_with_smaller_sizes():
    from experiment.reproduce import REPO, load_config

    full, demo = (load_config(os.path.join(REPO, "config", name)) for name in ("reproduce.json", "demo.json"))
    assert "base" not in demo and demo.keys() == full.keys()
    assert all(demo[key].keys() == full[key].keys() for key in full if isinstance(full[key], dict))
    assert demo["grpo"]["lr"] == full["grpo"]["lr"] and demo["rest"] == full["rest"]
    assert demo["rl_problems"] < full["rl_problems"] and demo["grpo"]["max_steps"] < full["grpo"]["max_steps"]


def test_step_seconds_survive_a_table_only_rebuild(tmp_path):
    from experiment.runner import stage_time, step_seconds

    runner = Runner(str(tmp_path), threads=1, parallel=2)
    runner.run([Step("a", "first", ["python", "-c", "pass"])])
    assert stage_time(str(tmp_path), runner) > 0
    rebuild = Runner(str(tmp_path), threads=1, parallel=2)  # --table_only: runs nothing, records nothing
    stage_time(str(tmp_path), rebuild, record=False)
    assert set(step_seconds(str(tmp_path))) == {"a"}
