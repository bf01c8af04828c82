"""Runs inside the sandbox child only: evalplus's trusted_exec. For each input group (base, then
plus) the canonical solution is executed afresh, as evalplus does per group, and run on every input
of the group (each deep-copied first, the call alone timed with the wall clock); for each input its
output is pickled onto `__sandbox_output__`, so outputs of any size stream to disk (Mbpp/255's come
to 780 MB) and are read back one at a time by `evalplus_harness.py` (what a program's output is
compared with). A trailer follows: the pickled list of all times (each written once, here), then its
offset as 8 bytes (little-endian), so the judge knows every time limit of a group before it runs the
group."""
import copy as _copy
import pickle as _pickle
import struct as _struct
import time as _time

_data = __sandbox_data__  # noqa: F821  (set by the sandbox harness)


def _reference_outputs():
    inputs = _pickle.load(__sandbox_files__[0])  # noqa: F821
    out = __sandbox_output__  # noqa: F821
    times, start = [], 0
    for size in _data["group_sizes"]:
        namespace = {}
        exec(__sandbox_program__, namespace)  # noqa: F821
        function = namespace[_data["entry_point"]]
        for inp in inputs[start:start + size]:
            inp = _copy.deepcopy(inp)
            began = _time.time()
            output = function(*inp)
            seconds = _time.time() - began
            if _data["output_not_none"]:
                output = output is not None
            times.append(seconds)
            _pickle.dump(output, out, protocol=4)
        start += size
    offset = out.tell()
    _pickle.dump(times, out, protocol=4)
    out.write(_struct.pack("<Q", offset))
