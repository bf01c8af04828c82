"""Value models: input text, loading (best/ resolution, class checks), batched scoring, the third-party shapes
and a few training steps that lower the loss, all on tiny models built on the spot."""
from __future__ import annotations

import json

import pytest
import torch

from rms.value_models import (
    METADATA_FILE,
    PRM_STEP_TOKEN,
    StandardScalarModel,
    encode,
    format_input,
    load_backbone,
    load_value_model,
    model_outputs,
    prepare_tokenizer,
    resolve_checkpoint,
    value_loss,
)
from tests.value_fixtures import BAD, GOOD, QUESTIONS, build_tiny_lm, value_rows

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("lm"))


def test_format_input_is_the_original_template():
    assert format_input("Add.", "x = 1\n") == "\n<prompt>\nAdd.\n<answer>\nx = 1\n\n"


def test_resolve_checkpoint_prefers_best(tmp_path):
    assert resolve_checkpoint(str(tmp_path)) == str(tmp_path)
    (tmp_path / "best").mkdir()
    assert resolve_checkpoint(str(tmp_path)) == str(tmp_path / "best")


def test_prepare_tokenizer_pads_and_truncates_left_with_eos_fallback(lm_dir):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.pad_token = None
    config = AutoConfig.from_pretrained(lm_dir)
    config.pad_token_id = None
    prepare_tokenizer(tokenizer, config)
    assert (tokenizer.padding_side, tokenizer.truncation_side) == ("left", "left")
    assert tokenizer.pad_token == tokenizer.eos_token and config.pad_token_id == tokenizer.eos_token_id
    batch = encode(tokenizer, ["a", "a b c d"], max_length=64)
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1
    assert batch["position_ids"][0, -1] == 0 and batch["position_ids"][1, -1] == batch["attention_mask"][1].sum() - 1


@pytest.mark.parametrize("rm_class", ["transformers_scalar", "transformers_prob", "standard_scalar"])
def test_in_house_classes_score_in_batches_like_one_by_one(lm_dir, tmp_path, rm_class):
    from transformers import AutoTokenizer

    torch.manual_seed(1)
    model = load_backbone(rm_class, str(lm_dir))
    saved = tmp_path / "run" / "best"
    model.save_pretrained(saved)
    prepare_tokenizer(AutoTokenizer.from_pretrained(lm_dir)).save_pretrained(saved)
    value_model = load_value_model(str(tmp_path / "run"), rm_class, batch_size=3, min_rw=-10, max_rw=10)
    questions, states = QUESTIONS * 2, GOOD + BAD
    batched = value_model.score(questions, states)
    single = [value_model.score([q], [s])[0] for q, s in zip(questions, states)]
    assert len(batched) == 6 and batched == pytest.approx(single, abs=1e-5)
    assert len(set(round(v, 6) for v in batched)) > 1  # the value depends on the input
    if rm_class == "transformers_prob":
        assert all(0 < v < 1 for v in batched)
    clamped = load_value_model(str(tmp_path / "run"), rm_class, min_rw=0.0, max_rw=1.0)
    assert clamped.score(questions, states) == pytest.approx([min(max(v, 0.0), 1.0) for v in batched], abs=1e-5)


def test_left_truncation_drops_the_problem_text_first(lm_dir, tmp_path):
    value_model = load_value_model(str(lm_dir), "transformers_scalar", max_length=12, min_rw=-10, max_rw=10)
    long_a, long_b = "x " * 200 + "first", "y " * 300 + "second"
    assert value_model.score([long_a], [GOOD[0]]) == pytest.approx(value_model.score([long_b], [GOOD[0]]))
    assert value_model.score([long_a], [GOOD[0]]) != pytest.approx(value_model.score([long_a], [BAD[0]]))


def test_load_value_model_errors(lm_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="value model not found"):
        load_value_model(str(tmp_path / "missing"), "transformers_scalar")
    with pytest.raises(ValueError, match="unknown rm_class 'no_such_class'"):
        load_value_model(str(lm_dir), "no_such_class")
    with pytest.raises(ValueError, match="unknown rm_class None"):
        load_value_model(str(lm_dir))
    with pytest.raises(FileNotFoundError, match="not a standard_scalar value model"):
        load_value_model(str(lm_dir), "standard_scalar")


ALL_CLASSES = ["transformers_scalar", "transformers_prob", "standard_scalar", "skywork", "qwen", "intern",
               "generalizable", "rlhflow"]


def test_third_party_classes_have_their_own_module_and_load_by_name(lm_dir):
    from rms import third_party_rms, value_models

    assert list(value_models.value_model_classes()) == ALL_CLASSES
    assert list(value_models.IN_HOUSE_CLASSES) == ALL_CLASSES[:3]
    assert {cls.__module__ for cls in third_party_rms.THIRD_PARTY_MODELS.values()} == {"rms.third_party_rms"}
    with pytest.raises(ValueError, match="choose one of " + ", ".join(ALL_CLASSES) + "$"):
        load_value_model(str(lm_dir), "no_such_class")


def test_third_party_module_imports_first_in_a_fresh_interpreter():
    """rms/third_party_rms.py builds on rms.value_models, which reaches it only when loading: either can be
    imported first (no circular import)."""
    import os
    import subprocess
    import sys

    code = ("import rms.third_party_rms as third, rms.value_models as value; "
            "print(value.value_model_classes()['qwen'] is third.QwenPRM)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr[-1000:]


def test_recorded_class_is_used_and_checked(lm_dir, tmp_path):
    import shutil

    saved = tmp_path / "best"
    shutil.copytree(lm_dir, saved)
    (saved / METADATA_FILE).write_text(json.dumps({"rm_class": "transformers_prob", "rm_type": "orm"}))
    value_model = load_value_model(str(tmp_path))
    assert type(value_model).__name__ == "TransformersProbRM" and value_model.rm_type == "orm"
    assert load_value_model(str(tmp_path), rm_type="prm").rm_type == "prm"
    with pytest.raises(ValueError, match="holds a transformers_prob value model, not transformers_scalar"):
        load_value_model(str(tmp_path), "transformers_scalar")


def test_skywork_shape_scores_the_chat_formatted_logit(tmp_path):
    directory = build_tiny_lm(tmp_path / "orm", head="sequence", num_labels=1)
    value_model = load_value_model(str(directory), "skywork")
    assert value_model.rm_type == "orm"
    scores = value_model.score(QUESTIONS, GOOD)
    tokenizer, model = value_model.tokenizer, value_model.model
    for question, state, score in zip(QUESTIONS, GOOD, scores):
        text = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": state}], tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            assert model(input_ids=ids).logits[0, 0].item() == pytest.approx(score, abs=1e-5)


def test_qwen_prm_shape_takes_the_minimum_step_probability(tmp_path):
    directory = build_tiny_lm(tmp_path / "prm", extra_tokens=(PRM_STEP_TOKEN,), head="token", num_labels=2)
    value_model = load_value_model(str(directory), "qwen")
    state = "def f(a, b):\n\n    c = a + b\n    return c\n"
    [score] = value_model.score([QUESTIONS[0]], [state])
    tokenizer, model = value_model.tokenizer, value_model.model
    answer = "def f(a, b):<extra_0>    c = a + b<extra_0>    return c<extra_0>"  # blank lines are no step
    text = tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[0]},
                                          {"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        probabilities = model(input_ids=ids).logits[0].softmax(-1)[:, 1]
    steps = probabilities[ids[0] == tokenizer.convert_tokens_to_ids(PRM_STEP_TOKEN)]
    assert len(steps) == 3 and score == pytest.approx(steps.min().item(), abs=1e-5)
    assert value_model.score(QUESTIONS[:2], [state, GOOD[1]])[0] == pytest.approx(score, abs=1e-5)


def test_qwen_prm_needs_the_step_token(tmp_path):
    directory = build_tiny_lm(tmp_path / "prm", head="token", num_labels=2)
    with pytest.raises(ValueError, match="no <extra_0> step token"):
        load_value_model(str(directory), "qwen")


@pytest.mark.parametrize("rm_class", ["transformers_scalar", "transformers_prob", "standard_scalar"])
def test_a_few_steps_lower_the_loss_on_a_fixed_set(lm_dir, rm_class):
    from transformers import AutoTokenizer

    from rms.trainer import ValueCollator, ValueRows

    torch.manual_seed(0)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(lm_dir))
    model = load_backbone(rm_class, str(lm_dir)).train()
    rows = ValueRows(value_rows(16, seed=3))
    batch = ValueCollator(tokenizer, 128)([rows[i] for i in range(len(rows))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = value_loss(rm_class, model_outputs(rm_class, model, batch), batch["labels"])
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.7 * losses[0], losses


def test_prob_loss_weights_and_targets():
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    labels = torch.tensor([0.25, 1.0])
    plain = value_loss("transformers_prob", logits, labels, 0.5)
    expected = -(torch.tensor([[0.75, 0.25], [0.0, 1.0]]) * logits.log_softmax(-1)).sum(-1).mean()
    assert plain.item() == pytest.approx(expected.item())
    only_positive = value_loss("transformers_prob", logits, labels, 1.0)
    assert only_positive.item() == pytest.approx(-(2 * labels * logits.log_softmax(-1)[:, 1]).mean().item())


def test_standard_scalar_head_reads_the_last_position_logits(lm_dir):
    torch.manual_seed(0)
    model = StandardScalarModel.from_pretrained(str(lm_dir), head_required=False).eval()
    from transformers import AutoTokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(lm_dir))
    batch = encode(tokenizer, [format_input(QUESTIONS[0], GOOD[0])], 128)
    with torch.inference_mode():
        logits = model.backbone(input_ids=batch["input_ids"]).logits[:, -1, :]
        assert model(**batch).item() == pytest.approx(model.value_head(logits).item(), abs=1e-5)


def test_intern_shape_scores_with_the_checkpoints_own_get_scores(tmp_path):
    from tests.value_fixtures import build_tiny_intern_rm

    value_model = load_value_model(str(build_tiny_intern_rm(tmp_path / "intern")), "intern", batch_size=2)
    assert value_model.rm_type == "orm" and type(value_model.model).__name__ == "TinyInternReward"
    scores = value_model.score(QUESTIONS + QUESTIONS, GOOD + BAD)
    for question, state, score in zip(QUESTIONS + QUESTIONS, GOOD + BAD, scores):
        alone = value_model.model.get_score(value_model.tokenizer, [{"role": "user", "content": question},
                                                                    {"role": "assistant", "content": state}])
        assert alone == pytest.approx(score, abs=1e-5)
    assert len(set(round(score, 6) for score in scores)) > 1


def test_generalizable_shape_scores_output_zero_of_the_conversation(tmp_path):
    directory = build_tiny_lm(tmp_path / "grm", head="sequence", num_labels=1, seed=3)
    value_model = load_value_model(str(directory), "generalizable", batch_size=3)
    assert value_model.rm_type == "orm"
    scores = value_model.score(QUESTIONS + QUESTIONS, GOOD + BAD)
    tokenizer, model = value_model.tokenizer, value_model.model
    for question, state, score in zip(QUESTIONS + QUESTIONS, GOOD + BAD, scores):
        text = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": state}], tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            assert model(input_ids=ids)[0][0, 0].item() == pytest.approx(score, abs=1e-5)


def test_rlhflow_prm_shape_takes_the_minimum_over_lines_of_p_plus(tmp_path):
    value_model = load_value_model(str(build_tiny_lm(tmp_path / "rlhflow", seed=1)), "rlhflow", batch_size=2)
    assert value_model.rm_type == "prm"
    tokenizer, model = value_model.tokenizer, value_model.model
    plus, minus = tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
    state = "def f(a, b):\n\n    c = a + b\n    return c\n"
    turns, expected = [], []
    for index, line in enumerate(["def f(a, b):", "    c = a + b", "    return c"]):  # blank lines are no step
        turns += [{"role": "user", "content": (QUESTIONS[0] + " " if index == 0 else "") + line},
                  {"role": "assistant", "content": "+"}]
        ids = tokenizer(tokenizer.apply_chat_template(turns, tokenize=False), add_special_tokens=False,
                        return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            expected.append(model(input_ids=ids).logits[0, -3, [plus, minus]].softmax(-1)[0].item())
    [score] = value_model.score([QUESTIONS[0]], [state])
    assert score == pytest.approx(min(expected), abs=1e-5)
    assert value_model.score([QUESTIONS[1], QUESTIONS[0]], [GOOD[1], state])[1] == pytest.approx(score, abs=1e-5)
