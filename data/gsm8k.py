"""GSM8K: grade-school math word problems (Cobbe et al., 2021), 7,473 train and 1,319 test.

    python -m data.prepare --domain GSM8K --source DIR   # DIR holds train.jsonl(.gz), test.jsonl(.gz)

writes `data/GSM8K/train.jsonl` and `test.jsonl`, the official files (`question`, `answer`) as
published in github.com/openai/grade-school-math. Training reads `train.jsonl`, evaluation
`test.jsonl`; either may also lie there gzipped. Problem ids are `GSM8K/<split>/<line index>`.

The prompt asks for GSM8K's own solution format, with no few-shot examples: one step per line, then
`#### <answer>`. A completion is graded on the number after its last `####` (see
`data.math_grading`): exact comparison as fractions, so "$1,080.00" answers 1080. The reference
answer sits in `test["answer"]`, the solution without calculator notes in `meta["solution"]`.
"""
from __future__ import annotations

from data.math_benchmark import MathBenchmark


class GSM8K(MathBenchmark):
    name = "GSM8K"
    files = ("train.jsonl", "test.jsonl")
    eval_file = "test.jsonl"
