"""Stop strings per domain, where the original README points (`prompts/stops.get_stop_strings`).

The strings themselves are data of each benchmark module under `data/` (`Benchmark.stop_strings`);
this is the original's lookup by domain name over the registry.
"""
from __future__ import annotations


def get_stop_strings(domain: str) -> list[str]:
    """The stop strings of a domain (unknown domain: ValueError, as in the original).

    >>> get_stop_strings("APPS")
    ['```']
    """
    from data.registry import get_benchmark

    return list(get_benchmark(domain).stop_strings)
