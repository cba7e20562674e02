"""The public surface is pinned: no refactor may drop or change a public name or signature.

``public_api.json`` beside this file holds, for each public module, every name of its
``__all__`` with its kind and signature; for classes also their public members (methods,
properties, attributes, the protocol dunders such as ``__aenter__``) and for exceptions their
bases. The tests compare the live surface against it: every pinned name must still be there,
the same. New names and members are fine (later issues add them); regenerate the file after
adding some, or after an intended change the lead signed off:

    python -m tests.unit.test_public_api --update

Only public import paths are pinned (``anyapi_async.otel``, never ``anyapi_async._client``),
so modules may move behind them. ``anyapi_async.ray`` needs the ray extra: its live check is a
``ray`` test (CI's Ray step, ``pytest -m ray``); without Ray the default run still checks that
the module's source lists every pinned name in ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
import sys
import typing
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
import pytest

SNAPSHOT = Path(__file__).with_name("public_api.json")
MODULES = (
    "anyapi_async", "anyapi_async.testing", "anyapi_async.cache", "anyapi_async.otel",
    "anyapi_async.ray",
)
#: Modules that need an optional extra the README's test command does not install.
NEEDS_EXTRA = {"anyapi_async.ray": "ray"}
#: Dunders that are part of how a class is used (``async with``, ``async for``, calls, ...).
PROTOCOL_DUNDERS = (
    "__call__",
    "__aenter__",
    "__aexit__",
    "__aiter__",
    "__anext__",
    "__await__",
    "__enter__",
    "__exit__",
    "__iter__",
    "__next__",
    "__len__",
    "__getitem__",
    "__contains__",
    "__bool__",
)
#: Constants of these types are pinned by value, others by type only.
PLAIN = (str, int, float, bool, type(None))
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: Python 3.11+ records `@overload`s at run time; on 3.10 they are not compared.
_get_overloads: Callable[[Any], Sequence[Callable[..., Any]]] = getattr(
    typing, "get_overloads", lambda obj: ()
)
HAS_OVERLOADS = hasattr(typing, "get_overloads")

Record = dict[str, Any]


class _Text:
    """Renders as the given text in a signature (annotations as written, stable defaults)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _annotation(annotation: Any) -> str:
    # `from __future__ import annotations` leaves strings: pin them as written.
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, typing.ForwardRef):  # TypedDict keys: the text, not its module
        return annotation.__forward_arg__
    return inspect.formatannotation(annotation)


def _default(value: Any) -> str:
    # Object reprs carry addresses, and sets of strings an order, that change between runs.
    if isinstance(value, (set, frozenset)) and value:
        items = ", ".join(sorted(_default(v) for v in value))
        return f"{type(value).__name__}({{{items}}})"
    return _ADDRESS.sub("", repr(value))


def render(sig: inspect.Signature) -> str:
    """A signature as a stable string: annotations as written in the source."""
    empty = inspect.Parameter.empty
    params = [
        p.replace(
            annotation=empty if p.annotation is empty else _Text(_annotation(p.annotation)),
            default=empty if p.default is empty else _Text(_default(p.default)),
        )
        for p in sig.parameters.values()
    ]
    ret = sig.return_annotation
    return str(
        sig.replace(
            parameters=params,
            return_annotation=empty if ret is empty else _Text(_annotation(ret)),
        )
    )


def _signature(obj: Any) -> str | None:
    try:
        return render(inspect.signature(obj))
    except (TypeError, ValueError):  # some builtins and C types have none
        return None


def _struct_fields(cls: type[msgspec.Struct], annotations: dict[str, str]) -> str:
    # msgspec's own __signature__ evaluates the annotations (forward references fail), and
    # does not say which fields are keyword-only: the fields, as written, with defaults.
    fields = cls.__struct_fields__
    defaults = (None,) * (len(fields) - len(cls.__struct_defaults__)) + tuple(
        _Text(_default(d)) for d in cls.__struct_defaults__
    )
    return "(" + ", ".join(
        f"{name}: {annotations.get(name, '?')}" + ("" if default is None else f" = {default!r}")
        for name, default in zip(fields, defaults, strict=True)
    ) + ")"


def _function(obj: Callable[..., Any], kind: str) -> Record:
    if inspect.isasyncgenfunction(obj):
        kind = f"async generator {kind}"
    elif inspect.iscoroutinefunction(obj):
        kind = f"async {kind}"
    record: Record = {"kind": kind, "signature": _signature(obj)}
    overloads = [render(inspect.signature(o)) for o in _get_overloads(obj)]
    if overloads:
        record["overloads"] = overloads
    return record


def _type_name(tp: Any) -> str:
    # Names only, never module paths: aliases survive a module move.
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is None:
        return str(getattr(tp, "__name__", None) or _default(tp))
    name = getattr(origin, "__name__", None) or getattr(origin, "_name", None) or repr(origin)
    return f"{name}[{', '.join(_type_name(a) for a in args)}]"


def _is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "anyapi_async"


def _annotations_of(cls: type) -> dict[str, str]:
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if _is_ours(klass) or typing.is_typeddict(cls):
            for name, ann in vars(klass).get("__annotations__", {}).items():
                found[name] = _annotation(ann)
    return found


def _member(cls: type, name: str, annotations: dict[str, str]) -> Record | None:
    owner = next((k for k in cls.__mro__ if name in vars(k)), None)
    if owner is None:
        # Annotated but never assigned on the class: an instance attribute.
        return {"kind": "attribute", "signature": annotations[name]}
    if not _is_ours(owner):
        return None  # object's, Exception's, msgspec's, Generic's: not ours to pin
    raw = vars(owner)[name]
    if isinstance(raw, property):
        ret = inspect.signature(raw.fget).return_annotation if raw.fget else inspect.Signature.empty
        text = "" if ret is inspect.Signature.empty else _annotation(ret)
        return {"kind": "property", "signature": text}
    if isinstance(raw, cached_property):
        ret = inspect.signature(raw.func).return_annotation
        text = "" if ret is inspect.Signature.empty else _annotation(ret)
        return {"kind": "cached_property", "signature": text}
    if isinstance(raw, staticmethod):
        return _function(raw.__func__, "staticmethod")
    if isinstance(raw, classmethod):
        return _function(raw.__func__, "classmethod")
    if inspect.isfunction(raw):
        return _function(raw, "method")
    if isinstance(raw, type):
        return {"kind": "class", "signature": raw.__name__}
    if name in annotations:
        return {"kind": "attribute", "signature": annotations[name]}
    return {"kind": "attribute", "signature": type(raw).__name__}


def _class(cls: type) -> Record:
    record: Record
    if issubclass(cls, BaseException):
        # Bases by public name; a private base (anyapi_async._x._Base) is no contract.
        bases = [
            f"{b.__module__}.{b.__qualname__}"
            for b in cls.__bases__
            if "._" not in f".{b.__module__}"
        ]
        record = {"kind": "exception", "signature": _signature(cls), "bases": bases}
    elif typing.is_typeddict(cls):
        record = {"kind": "typeddict", "signature": None}
    elif issubclass(cls, msgspec.Struct):
        record = {"kind": "struct", "signature": _struct_fields(cls, _annotations_of(cls))}
    else:
        record = {"kind": "class", "signature": _signature(cls)}
    members: dict[str, Record] = {}
    annotations = _annotations_of(cls)
    if typing.is_typeddict(cls):
        required: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
        for key, ann in annotations.items():
            state = "required" if key in required else "optional"
            members[key] = {"kind": "key", "signature": f"{ann} ({state})"}
    else:
        names = {n for n in dir(cls) if not n.startswith("_")} | set(PROTOCOL_DUNDERS)
        names |= {n for n in annotations if not n.startswith("_")}
        for name in sorted(names):
            if name in PROTOCOL_DUNDERS and not any(name in vars(k) for k in cls.__mro__):
                continue
            member = _member(cls, name, annotations)
            if member is not None:
                members[name] = member
    record["members"] = members
    return record


def describe(obj: Any) -> Record:
    """One public name: its kind and signature (and members for a class)."""
    if isinstance(obj, type):
        return _class(obj)
    if inspect.isfunction(obj):
        return _function(obj, "function")
    if typing.get_origin(obj) is not None:
        return {"kind": "alias", "signature": _type_name(obj)}
    if isinstance(obj, PLAIN) or (
        isinstance(obj, tuple) and all(isinstance(v, PLAIN) for v in obj)
    ):
        return {"kind": "constant", "signature": f"{type(obj).__name__} = {obj!r}"}
    if callable(obj):
        return {"kind": "callable", "signature": _signature(obj)}
    return {"kind": "constant", "signature": type(obj).__name__}


def surface(module_name: str) -> dict[str, Record]:
    """Every name of a module's ``__all__``, described."""
    module = importlib.import_module(module_name)
    found = {}
    for name in sorted(module.__all__):
        if name == "__version__":  # changes with every release: pinned by kind only
            found[name] = {"kind": "constant", "signature": "str"}
        else:
            found[name] = describe(getattr(module, name))
    return found


def _parameters(signature: str) -> ast.arguments | None:
    try:
        tree = ast.parse(f"def f{signature}: pass")
    except SyntaxError:
        return None
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    return function.args


def _params(args: list[ast.arg], defaults: list[ast.expr | None]) -> list[tuple[str, str, str]]:
    return [
        (a.arg, ast.unparse(a.annotation) if a.annotation else "", ast.unparse(d) if d else "")
        for a, d in zip(args, defaults, strict=True)
    ]


def compatible(old: str, new: str) -> bool:
    """Whether a call that worked with signature ``old`` still works with ``new``: every
    old parameter kept (same kind, position, annotation, default) and each added one
    optional. Anything that cannot be parsed must be equal."""
    if old == new:
        return True
    before, after = _parameters(old.split(" -> ")[0]), _parameters(new.split(" -> ")[0])
    if before is None or after is None or old.partition(" -> ")[2] != new.partition(" -> ")[2]:
        return False

    def positional(args: ast.arguments) -> list[tuple[str, str, str]]:
        listed = [*args.posonlyargs, *args.args]
        defaults: list[ast.expr | None] = [None] * (len(listed) - len(args.defaults))
        return _params(listed, [*defaults, *args.defaults])

    was, now = positional(before), positional(after)
    if now[: len(was)] != was or any(not default for _, _, default in now[len(was) :]):
        return False
    for star in ("vararg", "kwarg"):
        old_star, new_star = getattr(before, star), getattr(after, star)
        if old_star is not None and (new_star is None or old_star.arg != new_star.arg):
            return False
    was_kw = dict(
        (name, rest) for name, *rest in _params(before.kwonlyargs, list(before.kw_defaults))
    )
    now_kw = dict(
        (name, rest) for name, *rest in _params(after.kwonlyargs, list(after.kw_defaults))
    )
    if any(now_kw.get(name) != rest for name, rest in was_kw.items()):
        return False
    return all(rest[1] for name, rest in now_kw.items() if name not in was_kw)


def differences(pinned: dict[str, Record], live: dict[str, Record]) -> list[str]:
    """What the live surface dropped or changed (additions, optional parameters among
    them, are fine)."""
    problems: list[str] = []
    for name, want in pinned.items():
        got = live.get(name)
        if got is None:
            problems.append(f"{name}: dropped")
            continue
        for key in ("kind", "signature", "overloads") if HAS_OVERLOADS else ("kind", "signature"):
            if want.get(key) == got.get(key):
                continue
            old_sig, new_sig = want.get(key), got.get(key)
            if (
                key == "signature"
                and isinstance(old_sig, str)
                and isinstance(new_sig, str)
                and compatible(old_sig, new_sig)
            ):
                continue
            problems.append(f"{name}: {key} {want.get(key)!r} is now {got.get(key)!r}")
        # A base may gain a parent in between, but every pinned base stays an ancestor.
        ancestors: list[str] = got.get("ancestors") or got.get("bases") or []
        bases: list[str] = want.get("bases") or []
        for base in sorted(set(bases) - set(ancestors)):
            problems.append(f"{name}: no longer a subclass of {base}")
        for member, wanted in want.get("members", {}).items():
            has = got.get("members", {}).get(member)
            if not HAS_OVERLOADS and has is not None:
                wanted = {k: v for k, v in wanted.items() if k != "overloads"}
            if has is None:
                problems.append(f"{name}.{member}: dropped")
            elif has != wanted and not (
                has.get("kind") == wanted.get("kind")
                and has.get("overloads") == wanted.get("overloads")
                and isinstance(wanted.get("signature"), str)
                and isinstance(has.get("signature"), str)
                and compatible(wanted["signature"], has["signature"])
            ):
                problems.append(f"{name}.{member}: {wanted!r} is now {has!r}")
    return problems


def live_surface(module_name: str) -> dict[str, Record]:
    """The surface with each exception's ancestors (public ones) for the bases check."""
    found = surface(module_name)
    module = importlib.import_module(module_name)
    for name, record in found.items():
        if record["kind"] == "exception":
            cls = getattr(module, name)
            record["ancestors"] = [f"{b.__module__}.{b.__qualname__}" for b in cls.__mro__[1:]]
    return found


def load_snapshot() -> dict[str, dict[str, Record]]:
    data: dict[str, dict[str, Record]] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return data


def _extra_missing(module_name: str) -> str | None:
    extra = NEEDS_EXTRA.get(module_name)
    if extra is not None and importlib.util.find_spec(extra) is None:
        return extra
    return None


def update(argv: Sequence[str]) -> int:
    """Regenerate the snapshot from the code as it is (keeping modules whose extra is absent)."""
    if list(argv) != ["--update"]:
        print("usage: python -m tests.unit.test_public_api --update", file=sys.stderr)
        return 2
    old = load_snapshot() if SNAPSHOT.exists() else {}
    data: dict[str, dict[str, Record]] = {}
    for module_name in MODULES:
        extra = _extra_missing(module_name)
        if extra is not None:
            print(f"{module_name}: kept as pinned ({extra} is not installed)", file=sys.stderr)
            data[module_name] = old.get(module_name, {})
        else:
            data[module_name] = surface(module_name)
    SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
    return 0


def _check(module_name: str) -> None:
    pinned = load_snapshot()[module_name]
    assert pinned, f"nothing pinned for {module_name}"
    problems = differences(pinned, live_surface(module_name))
    assert not problems, f"{module_name} dropped or changed public API:\n  " + "\n  ".join(
        problems
    )


@pytest.mark.parametrize("module_name", [m for m in MODULES if m not in NEEDS_EXTRA])
def test_public_surface_is_kept(module_name: str) -> None:
    """Every pinned name of the module is still there, with the same kind and signature."""
    _check(module_name)


@pytest.mark.ray
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
def test_ray_surface_is_kept() -> None:
    """anyapi_async.ray (needs the ray extra: CI's `pytest -m ray` step runs this)."""
    if _extra_missing("anyapi_async.ray"):
        pytest.skip("anyapi_async.ray needs the ray extra: pip install -e '.[test,ray]'")
    _check("anyapi_async.ray")


def test_ray_names_are_listed_without_ray() -> None:
    """Without importing Ray: the source of anyapi_async.ray still lists every pinned name."""
    spec = importlib.util.find_spec("anyapi_async.ray")  # imports the parent package only
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    listed = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    )
    assert set(load_snapshot()["anyapi_async.ray"]) <= set(listed)


def test_a_dropped_or_changed_name_is_reported() -> None:
    """The comparison catches drops and changes, and lets additions through."""
    pinned: dict[str, Record] = {
        "f": {"kind": "function", "signature": "(a: 'int') -> 'str'"},
        "E": {"kind": "exception", "signature": "()", "bases": ["anyapi_async.APIError"]},
        "C": {"kind": "class", "signature": "()", "members": {"m": {"kind": "method"}}},
        "gone": {"kind": "constant", "signature": "str"},
    }
    live: dict[str, Record] = {
        "f": {"kind": "function", "signature": "(a: 'int', b: 'int') -> 'str'"},
        "E": {"kind": "exception", "signature": "()", "ancestors": ["builtins.Exception"]},
        "C": {"kind": "class", "signature": "()", "members": {"new": {"kind": "method"}}},
        "added": {"kind": "constant", "signature": "int"},
    }
    problems = differences(pinned, live)
    assert any(p.startswith("f: signature") for p in problems)
    assert "E: no longer a subclass of anyapi_async.APIError" in problems
    assert "C.m: dropped" in problems
    assert "gone: dropped" in problems
    assert not any("added" in p or "new" in p for p in problems)
    assert differences(pinned, {**pinned, **live, **pinned}) == []


def test_optional_parameters_may_be_added() -> None:
    """Adding an optional parameter keeps old calls working; anything else is a change."""
    old = "(a: int, *, b: str = 'x') -> None"
    assert compatible(old, "(a: int, c: int = 1, *, b: str = 'x', d: bool = False) -> None")
    assert not compatible(old, "(a: int, c: int, *, b: str = 'x') -> None")  # required
    assert not compatible(old, "(c: int, a: int, *, b: str = 'x') -> None")  # moved
    assert not compatible(old, "(a: int, *, b: str = 'y') -> None")  # default changed
    assert not compatible(old, "(a: str, *, b: str = 'x') -> None")  # annotation changed
    assert not compatible(old, "(a: int) -> None")  # dropped
    assert not compatible(old, "(a: int, *, b: str = 'x', e: int) -> None")  # required kw
    assert not compatible(old, "(a: int, *, b: str = 'x') -> int")  # return changed


def test_signatures_render_stably() -> None:
    """Annotations render as written and defaults without memory addresses."""

    def f(
        a: int, b: object = object(), *, c: str | None = None, d: frozenset[str] = frozenset("ba")
    ) -> list[int]:
        return []

    assert render(inspect.signature(f)) == (
        "(a: int, b: object = <object object>, *, c: str | None = None,"
        " d: frozenset[str] = frozenset({'a', 'b'})) -> list[int]"
    )


if __name__ == "__main__":
    sys.exit(update(sys.argv[1:]))
