"""What identifies a function's code for `oxiida run --cache`: a SHA-256
over its bytecode, constants (nested code objects recursively), names,
defaults, closure cells, and the globals it reads: plain data by value,
functions and classes of the same module by their own code, anything
imported by module and name. Not its name, file or line numbers: moving a
function or editing another one leaves its fingerprint unchanged."""

import hashlib
import pickle
import re
import types

_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fingerprint(obj):
    h = hashlib.sha256()
    _value(h, obj, set(), None)
    return h.digest()


def _put(h, tag, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    h.update(tag.encode())
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _named(h, tag, obj):
    _put(h, tag, "%s:%s" % (getattr(obj, "__module__", None), getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))))


def _value(h, v, seen, home):
    """`home`: the globals of the function being hashed; functions and
    classes that share them are hashed by code, others by name."""
    if isinstance(v, _PLAIN):
        _put(h, "plain", "%s:%r" % (type(v).__name__, v))
    elif isinstance(v, types.CodeType):
        _code(h, v, seen)
    elif isinstance(v, (tuple, list)):
        _put(h, type(v).__name__, str(len(v)))
        for item in v:
            _value(h, item, seen, home)
    elif isinstance(v, (set, frozenset)):
        _put(h, type(v).__name__, str(len(v)))
        for item in sorted(v, key=repr):
            _value(h, item, seen, home)
    elif isinstance(v, dict):
        _put(h, "dict", str(len(v)))
        for key, item in v.items():
            _value(h, key, seen, home)
            _value(h, item, seen, home)
    elif isinstance(v, types.FunctionType):
        if home is not None and v.__globals__ is not home:
            _named(h, "foreign-function", v)
        elif id(v) in seen:
            _named(h, "again", v)
        else:
            seen.add(id(v))
            _function(h, v, seen)
    elif isinstance(v, types.MethodType):
        _put(h, "method", "")
        _value(h, v.__func__, seen, home)
        _value(h, v.__self__, seen, home)
    elif isinstance(v, types.ModuleType):
        _put(h, "module", v.__name__)
    elif isinstance(v, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        _named(h, "builtin", v)
    elif isinstance(v, type):
        if home is not None and getattr(v, "__module__", None) != home.get("__name__"):
            _named(h, "foreign-class", v)
        elif id(v) in seen:
            _named(h, "again", v)
        else:
            seen.add(id(v))
            _named(h, "class", v)
            for key, item in sorted(vars(v).items()):
                if key in ("__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__firstlineno__", "__static_attributes__"):
                    continue
                _put(h, "attr", key)
                inner = getattr(item, "__func__", item)
                _value(h, inner, seen, getattr(inner, "__globals__", home))
    elif hasattr(v, "func") and hasattr(v, "args") and hasattr(v, "keywords"):
        # functools.partial and its kind
        _put(h, "partial", "")
        for part in (v.func, v.args, v.keywords):
            _value(h, part, seen, home)
    else:
        try:
            _put(h, "pickle", pickle.dumps(v, protocol=4))
        except Exception:
            _put(h, "repr", "%s:%s" % (type(v).__qualname__, _ADDRESS.sub("", repr(v))))


def _code(h, co, seen):
    _put(h, "code", co.co_code)
    _put(h, "shape", "%d %d %d %d" % (co.co_argcount, co.co_posonlyargcount, co.co_kwonlyargcount, co.co_flags))
    _put(h, "names", "\0".join(co.co_names))
    _put(h, "vars", "\0".join(co.co_varnames))
    _put(h, "cells", "\0".join(co.co_cellvars + co.co_freevars))
    table = getattr(co, "co_exceptiontable", None)
    if table is not None:
        _put(h, "exceptions", table)
    _put(h, "consts", str(len(co.co_consts)))
    for const in co.co_consts:
        _value(h, const, seen, None)


def _names(co):
    """Every global name `co` and the code nested in it may read."""
    names = list(co.co_names)
    for const in co.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names(const))
    return names


def _function(h, f, seen):
    home = f.__globals__
    _code(h, f.__code__, seen)
    _put(h, "defaults", "")
    _value(h, f.__defaults__, seen, home)
    _value(h, f.__kwdefaults__, seen, home)
    _put(h, "closure", "")
    for cell in f.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            _put(h, "empty", "")
            continue
        _value(h, contents, seen, home)
    _put(h, "globals", "")
    for name in sorted(set(_names(f.__code__))):
        if name in home:
            _put(h, "global", name)
            _value(h, home[name], seen, home)
