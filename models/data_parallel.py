"""The data-parallel backend: one engine per GPU group, each in a spawned process of its own.

    backend = DataParallelBackend("models/ckpts/tiny-coder", 2, engine="vllm", gpu_groups=[["0"], ["1"]])

Every call's prompts are split between the replicas (the seeds stay per prompt, so the samples are
those of one engine); a replica that fails, dies or hangs stops the run with an `EngineError` naming
it, and no answer is ever taken for another call's. Any engine `build_backend` knows works (hf in the
CPU tests).
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from models.errors import EngineError
from models.generation import build_backend
from models.outputs import ENGINE_BATCH_SEQUENCES, PromptOutput, prompt_seeds

logger = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # how often a waiting call checks that its replicas are alive


# -- data parallel: one engine per GPU group, each in a process of its own -------------------------------

def _replica_main(connection, model: str, engine: str, options: dict) -> None:
    """A replica process: build one backend, say `("ready", 0, None)` (or `("error", 0, message)`), then
    `serve` it."""
    try:
        backend = build_backend(model, engine=engine, **options)
    except Exception as exc:  # the parent reports it and stops the others
        connection.send(("error", 0, f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", 0, None))
    serve(connection, backend)


def serve(connection, backend) -> None:
    """Answer each request `(call, generate keyword arguments)` with `("ok", call, outputs)` or
    `("error", call, message)` until the parent sends None or goes away. The call number travels with
    the answer, so the parent never takes an answer to one call for another's."""
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the parent is gone
            return
        if request is None:
            return
        call, arguments = request
        try:
            connection.send(("ok", call, backend.generate(**arguments)))
        except Exception as exc:
            connection.send(("error", call, f"{type(exc).__name__}: {exc}"))


@dataclass
class _Replica:
    index: int
    gpus: str  # its CUDA_VISIBLE_DEVICES, for messages
    connection: Any
    process: Any


class DataParallelBackend:
    """`replicas` copies of one backend (vllm on GPUs; any engine works, hf in the CPU tests), each in a
    spawned process that sees only its GPU group (`gpu_groups[i]` -> CUDA_VISIBLE_DEVICES). A call's
    prompts are split into contiguous slices, one per replica, with each prompt's own seed, so the
    samples equal those one engine draws with the same per-prompt seeds.

    A call reads the answer of every replica it asked before it returns or raises, and each answer
    carries the call's number. A replica that answers with an error, dies, or gives no answer within
    `call_timeout` seconds (`startup_timeout` for its start) stops the backend: `EngineError` names the
    replica, its GPUs and its error, the replicas are shut down, and every later call raises the same
    error. `replica_main(connection, model, engine, options)` is what each process runs (tests pass
    fakes; see `serve`)."""

    batches_seeded_prompts = True

    def __init__(self, model: str, replicas: int, engine: str = "vllm",
                 gpu_groups: Sequence[Sequence[str]] | None = None, replica_main: Callable = _replica_main,
                 startup_timeout: float | None = 1800.0, call_timeout: float | None = 3600.0, **options):
        self.model, self.call_timeout = model, call_timeout
        # every call is split over all replicas: a call keeps them busy with one engine's batch apiece
        self.engines, self.preferred_batch_sequences = replicas, ENGINE_BATCH_SEQUENCES * replicas
        self._tokenizer = None
        self._calls = 0
        self._failure: str | None = None
        self._replicas: list[_Replica] = []
        context = multiprocessing.get_context("spawn")
        try:
            for index in range(replicas):
                group = gpu_groups[index] if gpu_groups else None
                parent, child = context.Pipe()
                # not a daemon: vLLM starts its own engine process inside, which daemons may not have; close()
                # (also at exit) stops them
                process = context.Process(target=replica_main, args=(child, model, engine, options), daemon=False)
                with _visible_devices(group):
                    process.start()
                child.close()
                gpus = ",".join(group) if group is not None else os.environ.get("CUDA_VISIBLE_DEVICES", "all")
                self._replicas.append(_Replica(index, gpus, parent, process))
            self._collect(range(replicas), 0, startup_timeout, "starting")
        except BaseException:
            self.close(grace=5.0)
            raise
        atexit.register(self.close)
        logger.info("%d %s replicas of %s ready", replicas, engine, model)

    @property
    def tokenizer(self):
        """The model's tokenizer (for chat templates, as the engine's own), loaded on first use."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        return self._tokenizer

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.7, max_tokens: int = 1024,
                 stop: Sequence[str] | None = None, seed: int | Sequence[int] | None = None) -> list[PromptOutput]:
        """Per prompt, n generations, in prompt order; EngineError when a replica fails (see the class)."""
        if self._failure is not None:
            raise EngineError(self._failure)
        seeds = prompt_seeds(seed, len(prompts), n)
        slices = _slices(len(prompts), len(self._replicas))
        self._calls += 1
        asked, unsent = [], {}
        try:
            for replica, (start, end) in zip(self._replicas, slices):
                if start == end:
                    continue
                arguments = {"prompts": list(prompts[start:end]), "n": n, "temperature": temperature,
                             "max_tokens": max_tokens, "stop": list(stop or []),
                             "seed": None if seed is None else seeds[start:end]}
                try:
                    replica.connection.send((self._calls, arguments))
                    asked.append(replica.index)
                except (BrokenPipeError, OSError):
                    unsent[replica.index] = self._exit_note(replica)
            answers = self._collect(asked, self._calls, self.call_timeout, f"call {self._calls}", unsent)
        except BaseException as exc:  # interrupted: answers may be left in the pipes, so no later call may run
            if self._failure is None:
                self._failure = f"data-parallel call {self._calls} interrupted ({type(exc).__name__})"
            raise
        outputs: list[PromptOutput] = []
        for index in asked:
            start, end = slices[index]
            if len(answers[index]) != end - start:
                self._stop(index, f"{len(answers[index])} outputs for {end - start} prompts", 1)
            outputs += answers[index]
        return outputs

    def _collect(self, indices: Iterable[int], call: int, timeout: float | None, what: str,
                 failures: dict[int, str] | None = None) -> dict[int, Any]:
        """The answer of each replica in `indices` to `call`. Every one is read (or its replica found dead
        or late) before this returns or raises EngineError for the first replica that failed."""
        failures = dict(failures or {})
        pending = {self._replicas[index].connection: self._replicas[index] for index in indices}
        answers: dict[int, Any] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                failures.update({replica.index: f"no answer within {timeout:g} s ({what})"
                                 for replica in pending.values()})
                break
            ready = multiprocessing.connection.wait(list(pending), timeout=min(POLL_SECONDS, left or POLL_SECONDS))
            for connection in ready:
                replica = pending[connection]
                status, value = self._read(replica, call)
                if status == "stale":
                    continue
                del pending[connection]
                if status in ("ok", "ready"):
                    answers[replica.index] = value
                else:
                    failures[replica.index] = value
            for connection, replica in list(pending.items()):
                # a replica that died while an engine process it forked holds its pipe open sends no EOF
                if not replica.process.is_alive() and not connection.poll():
                    del pending[connection]
                    failures[replica.index] = self._exit_note(replica)
        if failures:
            first = min(failures)
            self._stop(first, failures[first], len(failures))
        return answers

    def _read(self, replica: _Replica, call: int) -> tuple[str, Any]:
        """(status, value) of one answer: ok/ready with the outputs, error or died with a message, or
        stale for an answer to another call (dropped)."""
        try:
            status, answered, value = replica.connection.recv()
        except (EOFError, OSError):
            return "died", self._exit_note(replica)
        if answered != call:
            logger.warning("replica %d answered call %s during call %d: dropped", replica.index, answered, call)
            return "stale", None
        return status, value

    @staticmethod
    def _exit_note(replica: _Replica) -> str:
        replica.process.join(timeout=5)
        code = replica.process.exitcode
        return "exited" if code is None else f"exited with code {code}"

    def _stop(self, index: int, error: str, failed: int) -> None:
        replica = self._replicas[index]
        others = f" ({failed - 1} other replica(s) failed too)" if failed > 1 else ""
        self._failure = f"data-parallel replica {index} (GPUs {replica.gpus}): {error}{others}"
        self.close(grace=5.0)
        raise EngineError(self._failure)

    def close(self, grace: float = 30.0) -> None:
        """Ask every replica to stop, wait up to `grace` seconds, then terminate (and kill) the rest."""
        replicas, self._replicas = getattr(self, "_replicas", []), []
        if replicas and getattr(self, "_failure", None) is None:
            self._failure = "data-parallel backend closed"
        for replica in replicas:
            try:
                replica.connection.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + grace
        for replica in replicas:
            replica.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if replica.process.is_alive():
                replica.process.terminate()  # SIGTERM: vLLM shuts its engine process down
                replica.process.join(timeout=5)
            if replica.process.is_alive():
                replica.process.kill()
                replica.process.join(timeout=5)
            replica.connection.close()

    def __del__(self):
        self.close()


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous, balanced slices.

    >>> _slices(5, 2), _slices(1, 3)
    ([(0, 3), (3, 5)], [(0, 1), (1, 1), (1, 1)])
    """
    size, extra = divmod(count, parts)
    bounds, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        bounds.append((start, end))
        start = end
    return bounds


class _visible_devices:
    """CUDA_VISIBLE_DEVICES set to `ids` while a replica process starts (it inherits the environment)."""

    def __init__(self, ids: Sequence[str] | None):
        self.ids, self.saved = ids, None

    def __enter__(self):
        if self.ids is not None:
            self.saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(self.ids)

    def __exit__(self, *exc):
        if self.ids is None:
            return
        if self.saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.saved
