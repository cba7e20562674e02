"""Pydantic v2 behind the seams msgspec types use: schemas, decoding, tool arguments.

Imported only once a pydantic type was passed (`anyapi_async._schema.uses_pydantic`
decides), so ``import anyapi_async`` and calls with msgspec types never import pydantic.
Pydantic's errors are translated here, at one edge, into msgspec's: a reply or tool
arguments that are not JSON raise `msgspec.DecodeError`, values that do not validate
`msgspec.ValidationError`, with pydantic's messages and the place of each
(``Input should be a valid integer - at '$.age'``) and the pydantic error as the cause.
So ``parse()`` turns them into `ContentValidationError` and the tool runner into an error
message for the model, exactly as for msgspec types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final, Generic, TypeVar, get_origin

import msgspec
import pydantic
import pydantic_core

__all__ = ["ArgumentsDecoder", "PydanticDecoder", "arguments_model", "raw_schema", "to_builtins"]

T = TypeVar("T")

#: Errors listed in a message; more are counted, not listed (the model reads it).
MAX_LISTED_ERRORS: Final = 10


def raw_schema(tp: Any) -> dict[str, Any]:
    """Pydantic's JSON schema of ``tp`` (validation mode); `TypeError` if it has none."""
    try:
        return pydantic.TypeAdapter(tp).json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise TypeError(f"Cannot build a JSON schema for {tp!r}: {exc}") from exc


def _path(loc: Sequence[int | str]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _translate(exc: pydantic_core.ValidationError) -> msgspec.DecodeError:
    errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        ctx = errors[0].get("ctx") or {}
        return msgspec.DecodeError(str(ctx.get("error") or errors[0]["msg"]))
    count = len(errors)
    listed = "; ".join(f"{e['msg']} - at '{_path(e['loc'])}'" for e in errors[:MAX_LISTED_ERRORS])
    more = f"; and {count - MAX_LISTED_ERRORS} more" if count > MAX_LISTED_ERRORS else ""
    plural = "s" if count != 1 else ""
    return msgspec.ValidationError(
        f"{count} validation error{plural} for {exc.title}: {listed}{more}"
    )


class PydanticDecoder(Generic[T]):
    """Decodes JSON into ``tp`` with pydantic (``validate_json``), raising msgspec's errors."""

    __slots__ = ("_adapter",)

    def __init__(self, tp: type[T]) -> None:
        self._adapter: pydantic.TypeAdapter[T] = pydantic.TypeAdapter(tp)

    def decode(self, buf: str | bytes, /) -> T:
        """The validated value; raises `msgspec.DecodeError` or `msgspec.ValidationError`."""
        try:
            return self._adapter.validate_json(buf)
        except pydantic_core.ValidationError as exc:
            raise _translate(exc) from exc


def _has_description(annotation: Any) -> bool:
    if get_origin(annotation) is not Annotated:
        return False
    return any(
        isinstance(m, pydantic.fields.FieldInfo) and m.description
        for m in annotation.__metadata__
    )


def arguments_model(
    name: str, fields: Sequence[tuple[str, Any, Any]], docs: dict[str, str], module: str
) -> type[pydantic.BaseModel]:
    """A model of a tool's parameters: ``(name, annotation, default)`` with
    `msgspec.NODEFAULT` for required ones, descriptions from the docstring, and ``module``
    the function's (the model's ``__module__``).

    Each field is named by position and aliased to its parameter, so parameter names that
    pydantic keeps for itself (``json``, ``copy``, ``model_config``, ``_private``) work.
    Unknown arguments are refused: a misspelt optional one must not fall back silently.
    """
    definitions: dict[str, Any] = {}
    for i, (param, annotation, default) in enumerate(fields):
        options: dict[str, Any] = {
            "default": ... if default is msgspec.NODEFAULT else default,
            "alias": param,
            "title": param.replace("_", " ").strip().title() or param,
        }
        doc = docs.get(param)
        if doc and not _has_description(annotation):
            # Only when given: a description=None here would hide one in Annotated.
            options["description"] = doc
        definitions[f"p{i}"] = (annotation, pydantic.Field(**options))
    try:
        return pydantic.create_model(
            name,
            __config__=pydantic.ConfigDict(extra="forbid"),
            __module__=module,
            **definitions,
        )
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise TypeError(str(exc)) from exc


class ArgumentsDecoder:
    """Decodes a tool's JSON arguments with its `arguments_model` into keyword arguments."""

    __slots__ = ("_aliases", "_model")

    def __init__(self, model: type[pydantic.BaseModel]) -> None:
        self._model = model
        self._aliases = {name: f.alias or name for name, f in model.model_fields.items()}

    def decode(self, buf: str | bytes, /) -> dict[str, Any]:
        """Parameter name to validated value; raises msgspec's errors like `PydanticDecoder`."""
        try:
            args = self._model.model_validate_json(buf)
        except pydantic_core.ValidationError as exc:
            raise _translate(exc) from exc
        # Only what was given or defaulted: every field is set after validation.
        return {alias: getattr(args, name) for name, alias in self._aliases.items()}


def to_builtins(obj: Any) -> Any:
    """A model's JSON-ready data (``model_dump(mode="json")``), for encoding tool results."""
    if isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")
