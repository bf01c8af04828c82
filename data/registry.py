"""The benchmark registry: one module per benchmark, listed in one table.

Each benchmark module subclasses `data.benchmark.Benchmark` and never imports this registry; the
registry imports the modules and builds `BENCHMARKS` (name -> instance). Adding a benchmark is one
import and one entry in `_CLASSES`. Stage scripts only call this interface; nothing switches on a
domain name elsewhere.
"""
from __future__ import annotations

from data.apps import APPS
from data.benchmark import Benchmark
from data.bigcodebench import BigCodeBench
from data.ds1000 import DS1000
from data.gsm8k import GSM8K
from data.hendrycks_math import MATH
from data.humaneval import HumanEval, HumanEvalPlus
from data.mbpp import MBPP, MBPPPlus
from data.tinycode import TinyCode
from data.tinymath import TinyMath

__all__ = ["BENCHMARKS", "Benchmark", "domains", "get_benchmark"]

_CLASSES: tuple[type[Benchmark], ...] = (
    APPS,
    BigCodeBench,
    DS1000,
    HumanEval,
    HumanEvalPlus,
    MBPP,
    MBPPPlus,
    TinyCode,
    GSM8K,
    MATH,
    TinyMath,
)

BENCHMARKS: dict[str, Benchmark] = {cls.name: cls() for cls in _CLASSES}


def get_benchmark(domain: str) -> Benchmark:
    """The benchmark named `domain` (as `--domain` spells it); an unknown name fails with the known ones."""
    if domain not in BENCHMARKS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[domain]


def domains() -> list[str]:
    """Every registered domain name, sorted."""
    return sorted(BENCHMARKS)
