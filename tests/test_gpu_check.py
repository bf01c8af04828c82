"""runs/gpu_check.py's own logic on CPU: the offline install line (deepspeed's sdist builds offline only
with setuptools and wheel at hand), the first GPU of CUDA_VISIBLE_DEVICES, checks that do not depend on
each other, and the closing count with its exit code. `make gpu-check DEVICE=cpu` runs the checks."""
from __future__ import annotations

import importlib.util
import json
import shlex

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "runs" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_install_line_brings_what_the_deepspeed_sdist_builds_with(gpu_check):
    line = gpu_check.install_line(["trl", "deepspeed", "datasets"])
    download, install = line.split(" (where the network is: same Python and OS), then ")
    words = shlex.split(download)
    assert words[:4] == ["pip", "download", "-d", "wheels"]
    assert {"setuptools", "wheel"} <= set(words)
    assert "trl~=1.16.0" in words and "deepspeed>=0.19.8,<0.20" in words  # requirements.txt's versions
    assert shlex.split(install) == ["DS_BUILD_OPS=0", "pip", "install", "--no-index", "--find-links", "wheels", "trl",
                                    "deepspeed", "datasets"]
    assert "setuptools" not in gpu_check.install_line(["vllm"])  # a wheel: nothing to build


@pytest.mark.parametrize("visible, first", [("10,11", "10"), ("GPU-5c3b1f2e-1111-2222,GPU-9", "GPU-5c3b1f2e-1111-2222"),
                                            (None, "0"), ("3", "3")])
def test_first_gpu_of_cuda_visible_devices(gpu_check, visible, first):
    assert gpu_check.first_gpu(visible) == first


def test_summary_counts_and_exit_code(gpu_check):
    line, code = gpu_check.summary([("gpu-count", "skip", "cuda only"), ("hf-generate", "ok", "bf16"),
                                    ("grpo-zero2", "skip", "needs trl deepspeed: pip download ...")])
    assert line == ("3 checks: 1 ran (1 passed, 0 failed), 2 skipped (gpu-count: cuda only; grpo-zero2: needs trl "
                    "deepspeed)") and code == 0
    assert gpu_check.summary([("a", "ok", ""), ("b", "FAIL", "AssertionError: x")])[1] == 1
    assert gpu_check.summary([("a", "skip", "cuda only")])[1] == 1  # nothing verified is no success


def test_main_exits_1_when_a_check_that_ran_failed(gpu_check, monkeypatch, tmp_path, capsys):
    def fails(device, work, policy):
        raise AssertionError("seed 7 twice equal: False")

    def skips(device, work, policy):
        raise gpu_check.Skip("cuda only")

    monkeypatch.setattr(gpu_check, "build_policy", lambda work: work / "policy")
    monkeypatch.setattr(gpu_check, "CHECKS", {"a": lambda *a: "fine", "b": fails, "c": skips})
    assert gpu_check.main(["--device", "cpu"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("FAIL  b: AssertionError: seed 7 twice equal: False")
    assert lines[-1] == "3 checks: 2 ran (1 passed, 1 failed), 1 skipped (c: cuda only)"
    monkeypatch.setattr(gpu_check, "CHECKS", {"a": lambda *a: "fine", "c": skips})
    assert gpu_check.main(["--device", "cpu"]) == 0


def test_eval_mcts_builds_its_own_value_model(gpu_check, monkeypatch, tmp_path):
    """eval-mcts used to skip whenever value-zero3 had (it borrowed that check's model)."""
    commands = []

    def fake_run(command, work, timeout=300, env=None):
        commands.append(command)
        return json.dumps({"n_problems": 4})

    policy = gpu_check.build_policy(tmp_path)
    monkeypatch.setattr(gpu_check, "run", fake_run)
    assert "4 problems searched" in gpu_check.check_eval_mcts("cpu", tmp_path, policy)
    value_model = commands[0][commands[0].index("--rm_backend") + 1]
    assert value_model != str(tmp_path / "vm") and (tmp_path / "vm-untrained" / "config.json").is_file()
    from rms.value_models import load_value_model

    assert len(load_value_model(value_model, "transformers_scalar", device="cpu").score(["Add."], ["x"])) == 1
