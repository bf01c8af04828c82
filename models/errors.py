"""The errors that stop a stage instead of becoming per-problem failures: the generation engine could
not answer (a replica died, hung or failed), or the GPUs are there but CUDA cannot use them. A stage
prints `error: <message>` (one line) and exits 1; nothing of the call that failed is written."""


class EngineError(RuntimeError):
    """The engine cannot answer: the run stops (a retry problem by problem would only repeat it)."""


class CudaUnusableError(EngineError):
    """NVML counts GPUs that torch cannot use (a driver older than torch's CUDA build, a broken install)."""
