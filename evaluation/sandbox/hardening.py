"""The hardened judge inside the child: what a training reward needs beyond the official verdict.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
Everything this module uses is bound here, when the worker imports it, before any program runs: a
program that rebinds `type`, `id` or `map` in builtins changes nothing below.

A hardened job (`Job.hardened`) passes only when:
- identities did not change: every builtin (no name added, removed or rebound), every attribute that
  existed of the modules the harness and tests import (and `sys.modules` entries for them), the
  dicts of the classes those modules define, the harness's own globals, the names the harness and
  tests defined, and no trace or profile function appeared (`Watch`);
- every value the tests got back from the program's functions is plain (`plain_problem`): built-in
  data of exact types (int, float, complex, bool, str, bytes, None, list, tuple, dict, set,
  frozenset), recursively, or objects of library classes (classes of a module loaded from a file,
  with no method written by the program, e.g. numpy arrays or DataFrames) with no object of a
  program-made class anywhere in them (followed through `gc.get_referents`, up to NODE_LIMIT objects).
What it does not stop: a program that attacks this module specifically (it runs in the same process,
and could find and change these objects), nor lying objects inside a numpy object array.
"""
import builtins
import gc
import itertools
import operator
import os
import re
import sys
import types

_type, _id, _len, _map, _all, _tuple, _getattr = type, id, len, map, all, tuple, getattr
_is, _str, _list, _any, _set = operator.is_, str, list, any, set
_referents, _modules, _repeat = gc.get_referents, sys.modules, itertools.repeat
_gettrace, _getprofile = sys.gettrace, sys.getprofile
_isabs, _getcwd = os.path.isabs, os.getcwd
_mro = type.__dict__["__mro__"].__get__
_function_code = types.FunctionType.__dict__["__code__"].__get__
_function_defaults = types.FunctionType.__dict__["__defaults__"].__get__
_function_kwdefaults = types.FunctionType.__dict__["__kwdefaults__"].__get__
_class_dict = type.__dict__["__dict__"].__get__
_flags = type.__dict__["__flags__"].__get__
_HEAPTYPE = 1 << 9
_MISSING = object()
_SCALARS = frozenset(_map(_id, (int, float, complex, bool, str, bytes, type(None))))
_SEQUENCES = frozenset(_map(_id, (list, tuple, set, frozenset)))
_DICT = _id(dict)
# Objects followed no further: code and namespaces, not data (a library object's referents reach them).
_OPAQUE = frozenset(_map(_id, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
                               types.FrameType, types.MethodType, types.GeneratorType, types.CoroutineType,
                               types.CellType)))
NODE_LIMIT = 200000
# sys attributes that legitimately change while a harness runs (it swaps the streams).
_SYS_VOLATILE = frozenset(("stdin", "stdout", "stderr", "last_type", "last_value", "last_traceback", "last_exc",
                           "ps1", "ps2", "tracebacklimit"))
_ADDED_BY_PYTHON = frozenset(("__slotnames__",))  # copyreg caches it on a class at the first copy
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w., \t]+))", re.M)


class Tampered(BaseException):
    """A program's value was not plain data; a BaseException so that `except Exception` in the tests
    does not turn it into an ordinary failure (the Watch's flag records it anyway)."""


def imported_names(sources):
    """Module names that `import` lines of trusted sources (harness, tests) name.

    >>> sorted(imported_names(["import math, re as r\\nfrom os.path import join"]))
    ['math', 'os.path', 're']
    """
    names = _set()
    for source in sources:
        for found_from, found_import in _IMPORT.findall(source):
            if found_from:
                names.add(found_from)
            for part in found_import.split(","):
                words = part.split()
                if words:
                    names.add(words[0])
    return names


def _snapshot(mapping, skip=(), private=True):
    """The names of `mapping` and their objects; without `private`, names with one leading underscore
    and names bound to None are left out (libraries set their own lazily: matplotlib.pyplot's backend
    state, tempfile.tempdir)."""
    keys = _tuple(key for key in mapping if key not in skip
                  and (private or not (_is_private(key) or mapping.get(key) is None)))
    return mapping, keys, _tuple(_map(mapping.get, keys)), _len(mapping)


def _is_class(value):
    return _any(_map(_is, _mro(_type(value)), _repeat(type)))


def _is_private(key):
    return _type(key) is _str and key[:1] == "_" and key[:2] != "__"


def _changed(snapshot, strict):
    """The first name of the snapshot no longer bound to the same object (with `strict`, also a name
    added, but for the ones Python itself adds to a class, e.g. when an instance is copied), or None."""
    mapping, keys, values, size = snapshot
    if not _all(_map(_is, values, _map(mapping.get, keys, _repeat(_MISSING)))):
        return next(key for key, value in zip(keys, values) if mapping.get(key, _MISSING) is not value)
    if strict and _len(mapping) != size:
        added = {key for key in _set(mapping).difference(keys) - _ADDED_BY_PYTHON if not _is_private(key)}
        return _str(sorted(map(_str, added))[0]) if added else None
    return None


def _where(mapping):
    name = mapping.get("__name__") if _type(mapping) is dict else None
    return _str(name) if _type(name) is _str else "a namespace"


class Watch:
    """Identities taken before the program runs, checked after it and after every test."""

    def __init__(self, sources, own_globals):
        for name in imported_names(sources):
            try:
                __import__(name)
            except BaseException:  # the tests will fail on it themselves
                pass
        names = [name for name in imported_names(sources) if name in _modules]
        for name in _list(names):  # `import a.b` binds `a` too
            while "." in name:
                name = name.rsplit(".", 1)[0]
                names.append(name)
        tracked = [(name, _modules[name]) for name in _set(names) if name in _modules]
        self.strict = [_snapshot(builtins.__dict__)] + [_snapshot(scope) for scope in own_globals]
        self.functions = []  # (function, its code, its defaults) of the harness's and tests' functions
        for scope in own_globals:
            self._keep_functions(scope)
        self.loose = [_snapshot(module.__dict__, _SYS_VOLATILE if module is sys else (), private=False)
                      for _, module in tracked]
        self.loose.append(_snapshot(_modules, [key for key in _modules if key not in dict(tracked)]))
        self.strict += [_snapshot(_class_dict(value), private=False) for _, module in tracked for value in _tuple(
            module.__dict__.values()) if _is_class(value) and _flags(value) & _HEAPTYPE]
        self.trace = (_gettrace(), _getprofile())
        self.flag = []  # why a value was not plain, once found
        self.program_code = None

    def protect(self, namespace, strict=False):
        """Also watch the names `namespace` holds now (the harness's and tests' definitions), and the
        code of its functions (a program could swap a check function's `__code__`)."""
        (self.strict if strict else self.loose).append(_snapshot(namespace))
        self._keep_functions(namespace)

    def _keep_functions(self, namespace):
        for value in _tuple(namespace.values()):
            if _type(value) is types.FunctionType:
                self.functions.append((value, value.__code__, value.__defaults__, value.__kwdefaults__))

    def problem(self):
        """Why the judgement cannot be trusted, or None."""
        if self.flag:
            return self.flag[0]
        for strict, snapshots in ((True, self.strict), (False, self.loose)):
            for snapshot in snapshots:
                name = _changed(snapshot, strict)
                if name is not None:
                    return "tampered: %r of %s was changed" % (name, _where(snapshot[0]))
        for function, code, defaults, kwdefaults in self.functions:
            if not (_function_code(function) is code and _function_defaults(function) is defaults
                    and _function_kwdefaults(function) is kwdefaults):
                return "tampered: a function of the harness or the tests was changed"
        if not (_gettrace() is self.trace[0] and _getprofile() is self.trace[1]):
            return "tampered: a trace or profile function was set"
        return None

    def returned(self, value):
        """`value` if plain; otherwise the flag is set and Tampered raised."""
        why = plain_problem(value)
        if why is not None:
            self.flag.append("tampered: " + why)
            raise Tampered(why)
        return value

    def wrap(self, function):
        """`function` with each returned value checked by `returned`."""
        returned = self.returned

        def checked(*args, **kwargs):
            return returned(function(*args, **kwargs))
        for name in ("__name__", "__qualname__", "__doc__"):
            try:
                setattr(checked, name, _getattr(function, name))
            except BaseException:
                pass
        return checked

    def wrap_program(self, namespace):
        """Replace in `namespace` every function the program defined by its checked version."""
        for name, value in _list(namespace.items()):
            if _type(value) is types.FunctionType and _is_program_code(value.__code__):
                namespace[name] = self.wrap(value)


def _is_program_code(code):
    """Code compiled from the program's text (the sandbox compiles it as "<program>")."""
    return code.co_filename == "<program>"


def _from_file(code):
    name = code.co_filename
    return _type(name) is _str and _isabs(name) and not name.startswith(_getcwd())


def _library_module(name):
    """Whether the module named `name` is a library's: loaded from a file outside the program's directory,
    or frozen; never `__main__` (the worker's script) or `builtins` (the module of classes made where no
    `__name__` is set, as in a program run with empty globals)."""
    module = _modules.get(name) if _type(name) is _str and name not in ("__main__", "builtins") else None
    if _type(module) is not types.ModuleType:
        return False
    source = _getattr(module, "__file__", None)
    if _type(source) is _str:
        return _isabs(source) and not source.startswith(_getcwd())
    return _getattr(_getattr(module, "__spec__", None), "origin", None) == "frozen"


def _trusted_class(cls, cache):
    """Whether `cls` was not made by the program: a static type, or a class of a module loaded from a file
    whose own namespace holds no function the program compiled."""
    key = _id(cls)
    known = cache.get(key)
    if known is not None:
        return known[0]
    cache[key] = (False, cls)  # cls kept alive, so its id stays its own while we walk
    trusted = True
    for klass in _mro(cls):
        if not _flags(klass) & _HEAPTYPE:
            continue
        namespace = _class_dict(klass)
        codes = [function.__code__ for function in _map(_unwrap, _tuple(namespace.values()))
                 if _type(function) is types.FunctionType]
        # a library's class: its module is loaded (or, not imported under that name, e.g. collections.abc,
        # its methods come from files), and none of its methods is the program's
        library = _library_module(namespace.get("__module__")) or (codes and _all(_map(_from_file, codes)))
        if not library or _any(_map(_is_program_code, codes)):
            trusted = False
            break
    cache[key] = (trusted, cls)
    return trusted


def _unwrap(member):
    return _getattr(member, "__func__", member) if _type(member) in (staticmethod, classmethod) else member


def plain_problem(value):
    """Why `value` is not plain data (see the module docstring), or None.

    >>> plain_problem([1, (2.0, "a"), {"k": {None}}]) is None
    True
    >>> plain_problem(type("Int", (int,), {})(3))
    'a value of class Int, made by the program'
    """
    stack, seen, cache, nodes = [value], _set(), {}, 0
    while stack and nodes < NODE_LIMIT:  # counts the objects followed through their referents
        item = stack.pop()
        kind = _type(item)
        key = _id(kind)
        if key in _SCALARS:
            continue
        if key in _SEQUENCES or key == _DICT:
            if _id(item) in seen:
                continue
            seen.add(_id(item))
            members = _tuple(item) if key != _DICT else _tuple(dict.keys(item)) + _tuple(dict.values(item))
            # the kinds a container holds are found at C speed, by id (a program's metaclass could make
            # its class hash and compare equal to str): a container of scalars only (most returned
            # values, however large) costs no walk of its members
            if not _SCALARS.issuperset(_map(_id, _map(_type, members))):
                stack.extend(members)
            continue
        if not _trusted_class(kind, cache):
            return "a value of class %s, made by the program" % (_getattr(kind, "__name__", "?"),)
        if _is_class(item):  # a class: checked, not followed
            if not _trusted_class(item, cache):
                return "a class made by the program"
            continue
        if key in _OPAQUE or _id(item) in seen:
            continue
        nodes += 1
        seen.add(_id(item))
        stack.extend(_referents(item))
    return None
