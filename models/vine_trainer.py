"""VinePPO on TRL: a GRPOTrainer whose advantages are per token, from one of three estimators.

- `vine`: Monte Carlo values of the states inside each solution (models/vine.py), rolled out right
  after TRL generates the iteration's episodes: all unique states of this process in one call with
  n = K, through the hf decoding loop (each prefix prefilled once, its K samples sharing its cache) or
  through TRL's own vLLM (colocate or server; every process issues the same number of requests).
- `critic`: PPO's learned value, kept small: a linear value head on the policy's last hidden states
  (detached, so the policy is not trained by it), fit after each generation with PPO's clipped value
  loss (clip 0.2) on the returns of GAE with gamma = lambda = 1 (every token's return is the final
  reward; its advantage R - V_t); its weights and optimizer live in checkpoint-*/critic.pt.
- `grpo`: TRL's own group-normalized advantages, broadcast over the tokens.

`vine` and `critic` advantages are whitened over the valid tokens of the whole generation batch (all
processes). The KL to the reference is the k3 estimator clipped to [0, 10], added to the loss with
weight beta (TRL's own term, unclipped, is switched off around its loss).
"""
from __future__ import annotations

import logging
import os

import torch
from trl import GRPOTrainer

from data.records import problem_from_record
from data.registry import get_benchmark
from models.vine import ANSWER_PREFIX, Episode, Rollout, hf_rollouts, split_steps, vine_advantages

logger = logging.getLogger(__name__)

KL_CLIP = 10.0


def is_math(domain: str) -> bool:
    """Whether `domain` is graded on its final answer (data.math_grading) rather than in the sandbox."""
    return getattr(get_benchmark(domain), "kind", "code") == "math"


class EpisodeReward:
    """TRL reward function `(prompts, completions, completion_ids, partial_state, domain, test, id, ...)`:
    a code domain's reward from `code_reward` (models.rewards.CodeReward, which logs its parts; None when
    the data holds math only), a math domain's strict `benchmark.grade(problem, completion)`; 0 for a
    completion the length limit cut (`eos_ids` set by the trainer). `last` holds the latest call's rewards
    (this process's completions); `judge(columns, completions)` scores texts without logging (the rollouts)."""

    __name__ = "reward"

    def __init__(self, code_reward, max_completion_length: int):
        self.code_reward = code_reward
        self.max_completion_length = max_completion_length
        self.eos_ids: set[int] = set()
        self.last: list[float] = []

    def truncated(self, ids) -> bool:
        return len(ids) >= self.max_completion_length and (not ids or int(ids[-1]) not in self.eos_ids)

    def __call__(self, prompts, completions, completion_ids, partial_state, domain, test, id, init_state=None,
                 **logging_kwargs) -> list[float]:
        columns = [{"partial_state": p, "domain": d, "test": t, "id": i, "init_state": s}
                   for p, d, t, i, s in zip(partial_state, domain, test, id, init_state or [""] * len(id))]
        rewards = self.judge(columns, list(completions), logging_kwargs)
        cut = [self.truncated(ids) for ids in completion_ids]
        rewards = [0.0 if flag else reward for reward, flag in zip(rewards, cut)]
        if logging_kwargs.get("log_metric") is not None:
            logging_kwargs["log_metric"]("truncated", sum(cut) / max(1, len(cut)))
        self.last = rewards
        return rewards

    def judge(self, columns: list[dict], completions: list[str], logging_kwargs: dict | None = None) -> list[float]:
        rewards = [0.0] * len(completions)
        code = [i for i, c in enumerate(columns) if not is_math(c["domain"])]
        if code:
            picked = {name: [columns[i][name] for i in code] for name in columns[0]}
            if logging_kwargs is None:  # rollouts: scored, not logged
                scores = [s.reward for s in self.code_reward.score(
                    [completions[i] for i in code], picked["partial_state"], picked["domain"], picked["test"],
                    picked["id"], picked["init_state"])]
            else:
                scores = self.code_reward(prompts=[""] * len(code), completions=[completions[i] for i in code],
                                          **picked, **{k: v for k, v in logging_kwargs.items()
                                                       if k in ("log_metric", "log_extra", "trainer_state")})
            for index, score in zip(code, scores):
                rewards[index] = score
        for index, column in enumerate(columns):
            if is_math(column["domain"]):  # the final answer, graded strictly (no sandbox: no code runs)
                problem = problem_from_record(column)
                rewards[index] = float(get_benchmark(problem.domain).grade(problem, completions[index]).reward)
        return rewards


class VineTrainer(GRPOTrainer):
    """GRPOTrainer with `advantage` in {"vine", "critic", "grpo"} (see the module docstring)."""

    def __init__(self, *args, episode_reward: EpisodeReward, advantage: str = "vine", mc_rollouts: int = 9,
                 max_value_steps: int = 24, rollout_batch_size: int | None = None, critic_lr: float = 1e-3, **kwargs):
        if advantage not in ("vine", "critic", "grpo"):
            raise ValueError(f"advantage must be vine, critic or grpo, got {advantage!r}")
        super().__init__(*args, reward_funcs=[episode_reward], **kwargs)
        if self.loss_type not in ("dapo", "bnpo", "grpo", "dr_grpo"):
            raise ValueError(f"--loss_type {self.loss_type}: this trainer adds its clipped KL for dapo, bnpo, grpo "
                             "and dr_grpo only")
        self.episode_reward = episode_reward
        episode_reward.eos_ids = set(self.eos_token_ids)
        self.advantage, self.mc_rollouts, self.max_value_steps = advantage, mc_rollouts, max_value_steps
        self.rollout_batch_size = rollout_batch_size or (256 if self.accelerator.device.type == "cpu" else 4096)
        self._piece_cache: dict[int, str] = {}
        self.critic = self.critic_optimizer = None
        if advantage == "critic":
            hidden = self.accelerator.unwrap_model(self.model).config.get_text_config().hidden_size
            self.critic = torch.nn.Linear(hidden, 1).to(self.accelerator.device)
            torch.nn.init.zeros_(self.critic.weight)  # V = 0 at first, the same on every process
            torch.nn.init.zeros_(self.critic.bias)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_lr)

    # -- advantages ------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.advantage == "grpo" or not self.model.training:
            return output
        mask = output["completion_mask"]
        episodes = self._episodes(inputs, output)
        if self.advantage == "vine":
            per_token = self._vine_advantages(inputs, episodes)
        else:
            per_token = self._critic_advantages(output, episodes)
        advantages = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        for row, values in enumerate(per_token):
            advantages[row, :len(values)] = torch.tensor(values, dtype=torch.float32)
        output["advantages"] = self._whiten(advantages, mask.float())
        return output

    def _episodes(self, inputs, output) -> list[Episode]:
        episodes = []
        prompt_ids, prompt_mask = output["prompt_ids"].tolist(), output["prompt_mask"].tolist()
        completion_ids, completion_mask = output["completion_ids"].tolist(), output["completion_mask"].tolist()
        for index, record in enumerate(inputs):
            prompt = [t for t, m in zip(prompt_ids[index], prompt_mask[index]) if m]
            completion = [t for t, m in zip(completion_ids[index], completion_mask[index]) if m]
            answer = ANSWER_PREFIX if is_math(record["domain"]) else None
            episodes.append(Episode(prompt, completion, self.episode_reward.last[index],
                                    split_steps(completion, self._piece_text, answer), str(record.get("id", ""))))
        return episodes

    def _piece_text(self, token: int) -> str:
        if token not in self._piece_cache:
            self._piece_cache[token] = self.processing_class.decode([token], skip_special_tokens=True) \
                if hasattr(self.processing_class, "decode") else self._tokenizer.decode([token])
        return self._piece_cache[token]

    def _vine_advantages(self, inputs, episodes: list[Episode]) -> list[list[float]]:
        def score(owners: list[int], completions: list[list[int]]) -> list[float]:
            texts = self._tokenizer.batch_decode(completions, skip_special_tokens=True)
            columns = [{name: inputs[o].get(name, "") for name in ("partial_state", "domain", "test", "id",
                                                                      "init_state")} for o in owners]
            return self.episode_reward.judge(columns, texts)

        was_training = self.model.training
        self.model.eval()
        try:
            if self.use_vllm:
                result = vine_advantages(episodes, self._vllm_rollouts, score, self.mc_rollouts,
                                         self.max_value_steps, self.max_completion_length)
            else:
                from trl.models import unwrap_model_for_generation

                with unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                                 gather_deepspeed3_params=self.args.ds3_gather_for_generation) as model:
                    generate = hf_rollouts(model, self._tokenizer, set(self.eos_token_ids), self.temperature,
                                           self.top_p, self.top_k or 0, self.rollout_batch_size)
                    result = vine_advantages(episodes, generate, score, self.mc_rollouts, self.max_value_steps,
                                             self.max_completion_length)
        finally:
            self.model.train(was_training)
        self._log_gathered({f"vine/{name}": value for name, value in result.stats.items()},
                           sums=("vine/rollout_tokens", "vine/states", "vine/unique_states"))
        return result.token_advantages

    def _vllm_rollouts(self, prefix_ids: list[list[int]], n: int, budgets: list[int]) -> list[list[Rollout]]:
        """TRL's vLLM generation (n per prefix, its max_completion_length; mc_values cuts each row at its
        budget). Every process sends the same number of prefixes (padded with its first) so the
        collective calls inside match."""
        from accelerate.utils import gather_object

        most = max(gather_object([len(prefix_ids)]))
        padded = prefix_ids + [prefix_ids[0]] * (most - len(prefix_ids))
        repeated = [ids for ids in padded for _ in range(n)]
        _, completions, _, _ = self.vllm_generation.generate(prompts=repeated, images=None, num_generations=n)
        eos = set(self.eos_token_ids)
        rows = []
        for index in range(len(prefix_ids)):
            samples = completions[index * n:(index + 1) * n]
            rows.append([Rollout(list(ids), bool(ids) and (ids[-1] in eos or len(ids) < self.max_completion_length))
                         for ids in samples])
        return rows

    def _critic_advantages(self, output, episodes: list[Episode]) -> list[list[float]]:
        """A_t = R - V(s_t) from the head's values before this iteration's update (GAE, gamma = lambda = 1),
        then the head fits the returns R with the clipped value loss for num_iterations epochs."""
        features = self._critic_features(output)  # [B, T, hidden], detached
        mask = output["completion_mask"].float()
        returns = torch.tensor([e.reward for e in episodes], device=mask.device)[:, None].expand_as(mask)
        with torch.no_grad():
            old_values = self.critic(features).squeeze(-1)
        advantages = (returns - old_values) * mask
        losses = []
        for _ in range(self.num_iterations):
            for start in range(0, len(episodes), self.args.per_device_train_batch_size):
                rows = slice(start, start + self.args.per_device_train_batch_size)
                losses.append(self._critic_step(features[rows], old_values[rows], returns[rows], mask[rows]))
        self._log_gathered({"critic/value_mean": (old_values * mask).sum().item() / max(1.0, mask.sum().item()),
                            "critic/value_loss": sum(losses) / max(1, len(losses))})
        return [row[:len(e.completion_ids)].tolist() for row, e in zip(advantages, episodes)]

    def _critic_features(self, output) -> torch.Tensor:
        """The policy's last hidden state before each completion token (the state it is sampled in)."""
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        width, length = output["prompt_ids"].shape[1], output["completion_ids"].shape[1]
        model = self.accelerator.unwrap_model(self.model)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(input_ids), self.args.per_device_train_batch_size):
                rows = slice(start, start + self.args.per_device_train_batch_size)
                hidden = model(input_ids=input_ids[rows], attention_mask=attention[rows],
                               output_hidden_states=True).hidden_states[-1]
                chunks.append(hidden[:, width - 1:width - 1 + length].float())
        return torch.cat(chunks)

    def _critic_step(self, features, old_values, returns, mask) -> float:
        values = self.critic(features).squeeze(-1)
        clipped = old_values + (values - old_values).clamp(-self.epsilon_low, self.epsilon_low)
        losses = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
        loss = 0.5 * (losses * mask).sum() / mask.sum().clamp(min=1.0)
        self.critic_optimizer.zero_grad()
        loss.backward()
        if self.accelerator.num_processes > 1:  # one head on every process: average its gradients
            for parameter in self.critic.parameters():
                parameter.grad = self.accelerator.reduce(parameter.grad, reduction="mean")
        self.critic_optimizer.step()
        return loss.item()

    def _whiten(self, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(a - mean) / sqrt(var + 1e-8) over the valid tokens of every process; 0 on padding."""
        totals = torch.stack([(advantages * mask).sum(), (advantages ** 2 * mask).sum(), mask.sum()])
        total, squares, count = self.accelerator.reduce(totals, reduction="sum").double().tolist()
        mean = total / max(count, 1.0)
        variance = max(squares / max(count, 1.0) - mean ** 2, 0.0)
        self._log_gathered({"advantages/raw_mean": mean, "advantages/raw_std": variance ** 0.5}, local=False)
        return ((advantages.double() - mean) / (variance + 1e-8) ** 0.5 * mask).float()

    def _log_gathered(self, metrics: dict[str, float], sums: tuple = (), local: bool = True) -> None:
        """Per-iteration metrics: averaged over processes (summed for names in `sums`)."""
        names = sorted(metrics)
        values = torch.tensor([float(metrics[name]) for name in names], device=self.accelerator.device)
        if local:
            values = self.accelerator.gather(values[None]).view(-1, len(names))
            values = torch.stack([values[:, i].sum() if name in sums else values[:, i].mean()
                                  for i, name in enumerate(names)])
        for name, value in zip(names, values.tolist()):
            self._metrics["train"][name].append(value)

    # -- loss: TRL's, with the KL clipped --------------------------------------------------------

    def _compute_loss(self, model, inputs):
        beta, captured = self.beta, []
        original = self._get_per_token_logps_and_entropies

        def capture(*args, **kwargs):
            result = original(*args, **kwargs)
            captured.append(result[0])
            return result

        self.beta, self._get_per_token_logps_and_entropies = 0.0, capture
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self.beta = beta
            del self._get_per_token_logps_and_entropies
        if beta == 0.0:
            return loss
        difference = inputs["ref_per_token_logps"] - captured[0]
        kl = (torch.exp(difference) - difference - 1).clamp(0.0, KL_CLIP)
        mask = inputs["completion_mask"] * inputs.get("tool_mask", 1)
        self._metrics["train" if self.model.training else "eval"]["kl"].append(
            self.accelerator.gather((kl * mask).sum() / mask.sum().clamp(min=1.0)).mean().item())
        return loss + beta * self._aggregate(kl, mask.float(), inputs)

    def _aggregate(self, per_token: torch.Tensor, mask: torch.Tensor, inputs) -> torch.Tensor:
        """A per-token term reduced as TRL reduces the policy loss of `loss_type` (one accumulation step)."""
        accumulation = self.current_gradient_accumulation_steps if self.model.training else 1.0
        if self.loss_type == "grpo":
            return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / accumulation
        if self.loss_type == "bnpo":
            return (per_token * mask).sum() / mask.sum().clamp(min=1.0) / accumulation
        if self.loss_type == "dr_grpo":
            return (per_token * mask).sum() / (per_token.size(0) * self.max_completion_length) / accumulation
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if self.model.training:
            normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return (per_token * mask).sum() / normalizer

    # -- the critic in checkpoints ---------------------------------------------------------------

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.critic is not None and self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder = os.path.join(self._get_output_dir(trial=trial), name)
            torch.save({"head": self.critic.state_dict(), "optimizer": self.critic_optimizer.state_dict()},
                       os.path.join(folder, "critic.pt"))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, "critic.pt") if checkpoint else ""
        if self.critic is not None and os.path.exists(path):
            state = torch.load(path, map_location=self.accelerator.device, weights_only=True)
            self.critic.load_state_dict(state["head"])
            self.critic_optimizer.load_state_dict(state["optimizer"])
