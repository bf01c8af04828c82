"""The tiny policy: a small Qwen2 trained on TinyCode (or TinyMath) on CPU in a few minutes, with no download.

    python -m models.tiny [--task TinyCode] [--output models/ckpts/tiny-coder] [--steps N] [--seed 0] \
        [--threads 1] [--eval_n 4] [--if_missing]
    python -m models.tiny --task TinyMath        # into models/ckpts/tiny-math

reads `data/<task>/{train,test}.jsonl` (generated first, seed 0, when missing), trains a
byte-level BPE on the spot (digits one per token, Qwen2's split pattern so that reloading gives the
same ids) and a small Qwen2 on exactly the text the policy sees when sampling: the chat-formatted
prompt (`prompts.format_prompt`; TinyCode's ends in "```python\\n" and the signature, TinyMath's
after the instruction and the question), then the reference solution past the starter code, the
task's closing (TinyCode's fence; TinyMath has none: its solution ends with `#### answer`) and the
end-of-turn token, with the loss on the completion only. Batches are bucketed by length (little
padding); the learning rate warms up, then decays along a cosine. Writes `<output>/` (model,
tokenizer with the ChatML chat template, `training_args.json`, `eval.json`: test pass@1 at
`--eval_temperature`, n samples per problem, judged by the benchmark (TinyCode in the sandbox,
TinyMath by the strict GSM8K rule), and the training time), first into a temporary folder renamed
at the end, so a killed run never leaves a half model at the output path.

The builders are also what tests of mechanics use (a random model in a second):

    tokenizer = build_tokenizer(texts, vocab_size=1024)
    model = build_model(tokenizer, hidden_size=64, layers=2)
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

logger = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
# Qwen2's pre-tokenizer split, with digits one per token (\p{N} alone, not \p{N}{1,3})
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
CLOSING_FENCE = "```"
IGNORE_INDEX = -100  # label of a token that carries no loss (prompt, padding)


class TinyTask(NamedTuple):
    """What differs between the tasks a tiny policy learns; the benchmark of the same name does the rest."""
    generator: str  # module whose write(directory, seed=0) writes the data
    policy: str  # default folder name under models/ckpts
    closing: str  # written after the solution, before the end of turn
    steps: Callable  # problem -> its number of steps, for pass@1 by steps
    optimizer_steps: int  # the default --steps


TASKS = {
    # TinyCode's steps are the chained operations of its template (`...|a>b>c`)
    "TinyCode": TinyTask("data.tinycode", "tiny-coder", CLOSING_FENCE,
                         lambda problem: problem.meta["template"].split("|")[1].count(">") + 1, 500),
    # TinyMath's policy on 6,000 tasks: 1,500 steps left test pass@1 at 0.29 greedy, 3,000 gave 0.52
    "TinyMath": TinyTask("data.tinymath", "tiny-math", "", lambda problem: len(problem.meta["events"]), 3000),
}


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|pad|>", unk_token=None, padding_side="left",
                                   chat_template=CHATML_TEMPLATE)


def build_model(tokenizer, hidden_size: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                seed: int = 0, intermediate_size: int | None = None):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=intermediate_size or hidden_size * 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Qwen2ForCausalLM(config)


# -- training the tiny policy ---------------------------------------------------------------------


@dataclass
class TinyPolicyArguments:
    task: str = field(default="TinyCode", metadata={"help": "what the policy learns", "choices": tuple(TASKS)})
    output: str = field(default="", metadata={
        "help": "folder the model, tokenizer, training_args.json and eval.json go to (empty: models/ckpts/tiny-coder "
                "for TinyCode, models/ckpts/tiny-math for TinyMath)"})
    data_directory: str = field(default="", metadata={
        "help": "the task's train.jsonl/test.jsonl, generated with seed 0 if missing (empty: data/<task>)"})
    steps: int = field(default=0, metadata={"help": "optimizer steps (0: the task's, TinyCode 500, TinyMath 3000)"})
    batch_size: int = field(default=32, metadata={"help": "sequences per step"})
    learning_rate: float = field(default=3e-3, metadata={"help": "peak AdamW learning rate"})
    warmup_steps: int = field(default=40, metadata={"help": "linear warm-up steps, then a cosine decay to 10%%"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary cap (TinyCode saturates near 570)"})
    hidden_size: int = field(default=192, metadata={"help": "model width"})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width"})
    layers: int = field(default=4, metadata={"help": "decoder layers"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    kv_heads: int = field(default=2, metadata={"help": "key/value heads"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation, batch order and evaluation samples"})
    threads: int = field(default=1, metadata={
        "help": "torch CPU threads (set explicitly, whatever OMP_NUM_THREADS says); 1 because with 2 threads a step "
                "took 8x longer whenever another process was busy on this 2-core machine"})
    log_every: int = field(default=50, metadata={"help": "print the mean loss every this many steps"})
    max_train_problems: int = field(default=0, metadata={"help": "use only the first N train problems (0: all)"})
    eval_n: int = field(default=4, metadata={"help": "samples per test problem for pass@1 (0: no evaluation)"})
    eval_temperature: float = field(default=0.7, metadata={"help": "sampling temperature of the evaluation"})
    eval_max_tokens: int = field(default=160, metadata={"help": "new tokens per evaluation sample"})
    max_eval_problems: int = field(default=0, metadata={"help": "evaluate only the first N test problems (0: all)"})
    if_missing: bool = field(default=False, metadata={"help": "do nothing when the output folder already exists"})

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASKS)}")
        self.output = self.output or os.path.join("models", "ckpts", TASKS[self.task].policy)
        self.steps = self.steps or TASKS[self.task].optimizer_steps
        self.data_directory = self.data_directory or os.path.join("data", self.task)


def load_splits(args: TinyPolicyArguments):
    """(train problems, test problems); writes the task's canonical data (seed 0) when missing."""
    import importlib

    from data.registry import get_benchmark

    train_path = os.path.join(args.data_directory, "train.jsonl")
    if not os.path.exists(train_path):
        logger.info("no %s: generating %s (seed 0)", train_path, args.task)
        importlib.import_module(TASKS[args.task].generator).write(args.data_directory, seed=0)
    benchmark = get_benchmark(args.task)
    train = benchmark.load(args.data_directory, "train.jsonl")
    test = benchmark.load(args.data_directory, "test.jsonl")
    if args.max_train_problems:
        train = train[:args.max_train_problems]
    if args.max_eval_problems:
        test = test[:args.max_eval_problems]
    return train, test


def completion_text(problem) -> str:
    """What the policy should write after the prompt: the solution past the starter code, then the
    task's closing (TinyCode's fence, its stop string; nothing after TinyMath's `#### answer`)."""
    solution = problem.meta["solution"]
    if not solution.startswith(problem.init_state):
        raise ValueError(f"{problem.id}: the solution does not begin with the starter code")
    return solution[len(problem.init_state):] + TASKS[problem.domain].closing


def tokenizer_texts(problems) -> list[str]:
    """The user messages and solutions, and the chat scaffolding's words first, so that "user",
    "assistant" and the response prefix ("```python") get tokens."""
    from data.registry import get_benchmark

    benchmark = get_benchmark(problems[0].domain)
    closing = TASKS[problems[0].domain].closing
    return ["user\nassistant\n" + benchmark.response_prefix(problems[0], "")] + \
        [benchmark.user_message(p) for p in problems] + [p.meta["solution"] + closing for p in problems]


def encode_examples(problems, tokenizer) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per problem. Prompt and completion are encoded apart, as at
    sampling time the model continues the encoded prompt."""
    from prompts import format_prompt

    examples = []
    for problem in problems:
        prompt = tokenizer(format_prompt(problem, tokenizer), add_special_tokens=False)["input_ids"]
        completion = tokenizer(completion_text(problem), add_special_tokens=False)["input_ids"]
        examples.append((prompt + completion + [tokenizer.eos_token_id], len(prompt)))
    return examples


def length_bucketed_batches(examples: Sequence, batch_size: int, rng: random.Random,
                            pool_batches: int = 16) -> Iterator[list]:
    """Batches forever: each epoch is shuffled, cut into pools of `pool_batches` batches, each pool
    sorted by length before cutting it into batches (so a batch pads little), the batches shuffled."""
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        batches = []
        pool_size = batch_size * pool_batches
        for start in range(0, len(order), pool_size):
            pool = sorted(order[start:start + pool_size], key=lambda i: len(examples[i][0]))
            batches += [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(batches)
        for batch in batches:
            yield [examples[i] for i in batch]


def collate(batch: Sequence[tuple[list[int], int]], pad_id: int):
    """Right-padded input ids, attention mask and labels (loss on completion tokens only)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, prompt_length:len(ids)] = torch.tensor(ids[prompt_length:])
        attention_mask[row, :len(ids)] = 1
    return input_ids, attention_mask, labels


def learning_rate_at(step: int, args: TinyPolicyArguments) -> float:
    """Linear warm-up to the peak, then a cosine decay to a tenth of it.

    >>> a = TinyPolicyArguments(steps=100, learning_rate=1.0, warmup_steps=10)
    >>> learning_rate_at(0, a), learning_rate_at(9, a), round(learning_rate_at(99, a), 2)
    (0.1, 1.0, 0.1)
    """
    if step < args.warmup_steps:
        return args.learning_rate * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.steps - 1 - args.warmup_steps)
    return args.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(model, examples, pad_id: int, args: TinyPolicyArguments) -> list[dict]:
    """AdamW on the completion tokens; returns the loss curve (mean loss per `log_every` steps)."""
    import torch
    from tqdm import tqdm

    rng = random.Random(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95),
                                  weight_decay=args.weight_decay)
    model.train()
    curve, window = [], []
    batches = length_bucketed_batches(examples, args.batch_size, rng)
    progress = tqdm(range(args.steps), desc="training", file=sys.stderr)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, args)
        input_ids, attention_mask, labels = collate(next(batches), pad_id)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        window.append(loss.item())
        if len(window) == args.log_every or step == args.steps - 1:
            curve.append({"step": step + 1, "loss": sum(window) / len(window)})
            progress.write(f"step {step + 1}: loss {curve[-1]['loss']:.4f}")
            window = []
    model.eval()
    return curve


def judge(benchmark, items) -> list[list]:
    """Verdicts of `items` = [(problem, programs)]: in the sandbox, or by the benchmark's own `grade`
    (strict) for one that runs no code (the math domains)."""
    from evaluation.judging import verify
    from evaluation.sandbox import Sandbox

    if not benchmark.needs_sandbox:
        return [[benchmark.grade(problem, program) for program in programs] for problem, programs in items]
    with Sandbox() as sandbox:  # one worker per core: generation is over, the cores are free
        return verify(sandbox, benchmark, items)


def evaluate(model_dir: str, problems, args: TinyPolicyArguments) -> dict:
    """pass@1 over `problems`: `eval_n` samples each at `eval_temperature`, through the hf backend,
    judged as `judge` does; also by the number of steps of the task (TinyCode's 4 steps, TinyMath's 4
    events: lengths no train task has)."""
    from data.registry import get_benchmark
    from evaluation.metrics import summarize
    from models.generation import HFBackend
    from prompts import format_prompt

    benchmark = get_benchmark(args.task)
    backend = HFBackend(model_dir, device="cpu", batch_size=64)
    prompts = [format_prompt(problem, backend.tokenizer) for problem in problems]
    started = time.time()
    outputs = backend.generate(prompts, n=args.eval_n, temperature=args.eval_temperature,
                               max_tokens=args.eval_max_tokens, stop=list(benchmark.stop_strings), seed=args.seed)
    generation_s = time.time() - started
    items = [(problem, [problem.init_state + benchmark.extract_code(g.text) for g in output.generations])
             for problem, output in zip(problems, outputs)]
    verdicts = judge(benchmark, items)
    rewards = [[verdict.reward for verdict in group] for group in verdicts]
    statuses: dict[str, int] = {}
    for verdict in (v for group in verdicts for v in group):
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    by_steps: dict[str, list] = {}
    for problem, group in zip(problems, rewards):
        by_steps.setdefault(str(TASKS[args.task].steps(problem)), []).append(group)
    return {**summarize(rewards, ks=(1,)), "statuses": statuses, "generation_s": round(generation_s, 1),
            "pass@1_by_steps": {k: round(summarize(v, ks=(1,))["pass@1"], 4) for k, v in sorted(by_steps.items())},
            "n": args.eval_n, "temperature": args.eval_temperature, "max_tokens": args.eval_max_tokens}


def build_policy(args: TinyPolicyArguments, folder: str) -> dict:
    """Train the tokenizer and the model into `folder`; returns the training figures."""
    import torch

    train_problems, _ = load_splits(args)
    tokenizer = build_tokenizer(tokenizer_texts(train_problems), args.vocab_size)
    examples = encode_examples(train_problems, tokenizer)
    model = build_model(tokenizer, args.hidden_size, args.layers, args.heads, args.kv_heads, args.seed,
                        args.intermediate_size)
    logger.info("%d examples, %.1f tokens on average; vocabulary %d; %.2fM parameters", len(examples),
                sum(len(ids) for ids, _ in examples) / len(examples), len(tokenizer),
                sum(p.numel() for p in model.parameters()) / 1e6)
    started = time.time()
    curve = train(model, examples, tokenizer.pad_token_id, args)
    training_s = time.time() - started
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"training_s": round(training_s, 1), "s_per_step": round(training_s / max(1, args.steps), 3),
            "final_loss": curve[-1]["loss"] if curve else None, "loss_curve": curve,
            "parameters": sum(p.numel() for p in model.parameters()), "vocabulary": len(tokenizer),
            "threads": torch.get_num_threads(), "train_problems": len(train_problems)}


def string_to_bool(text: str) -> bool:
    """`--if_missing true|false|yes|no|1|0` (the bare flag means true)."""
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv: list[str] | None = None) -> TinyPolicyArguments:
    """The command line: one flag per field of `TinyPolicyArguments` (also spelled with dashes), its help
    line and default from the field."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    kinds = {"str": str, "int": int, "float": float, "bool": string_to_bool}
    for spec in fields(TinyPolicyArguments):
        flags = [f"--{spec.name}"] + ([f"--{spec.name.replace('_', '-')}"] if "_" in spec.name else [])
        extra = {"nargs": "?", "const": True} if spec.type == "bool" else {}
        parser.add_argument(*flags, dest=spec.name, type=kinds[spec.type], default=spec.default,
                            help=spec.metadata["help"], choices=spec.metadata.get("choices"), **extra)
    return TinyPolicyArguments(**vars(parser.parse_args(argv)))


def train_tiny_policy(args: TinyPolicyArguments) -> dict:
    """Train (and with eval_n > 0 evaluate) the policy into `args.output`; returns the figures written
    to its eval.json, or {} when `if_missing` finds the folder there. Raises DataError on a bad data file."""
    import torch

    from data.jsonl import write_json

    if args.if_missing and os.path.exists(os.path.join(args.output, "config.json")):
        logger.info("%s exists: nothing to do (--if_missing)", args.output)
        return {}
    torch.set_num_threads(args.threads)
    _remove_stale_folders(args.output)
    folder = f"{args.output.rstrip(os.sep)}.tmp-{os.getpid()}"
    os.makedirs(folder)
    try:
        write_json(os.path.join(folder, "training_args.json"), asdict(args))
        figures = build_policy(args, folder)
        if args.eval_n > 0:
            _, test_problems = load_splits(args)
            figures["eval"] = evaluate(folder, test_problems, args)
            logger.info("test pass@1 %.3f (n=%d, T=%s)", figures["eval"]["pass@1"], args.eval_n,
                        args.eval_temperature)
        write_json(os.path.join(folder, "eval.json"), figures)
        _replace(folder, args.output)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def _remove_stale_folders(output: str) -> None:
    """Temporary folders of runs that were killed (their process is gone)."""
    import glob

    for folder in glob.glob(f"{glob.escape(output.rstrip(os.sep))}.tmp-*"):
        pid = folder.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            logger.info("removing %s, left by a killed run", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace(folder: str, output: str) -> None:
    """Put `folder` at `output`, an existing output being removed only once the new one is whole."""
    old = f"{output.rstrip(os.sep)}.old-{os.getpid()}"
    if os.path.exists(output):
        os.rename(output, old)
    os.rename(folder, output)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the figures (less the loss curve) printed as one JSON line; 2 with one line on a
    missing or malformed data file."""
    from data.jsonl import DataError
    from models.training import configure_logging

    configure_logging()
    args = parse_args(argv)
    try:
        figures = train_tiny_policy(args)
    except DataError as error:  # one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: value for key, value in figures.items() if key != "loss_curve"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
