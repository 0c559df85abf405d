"""Request validation: JSON bodies and query strings against the route's one JSON Schema
(app/api/schemas.py), failing as 400 with the field named; the form content type of OAuth."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flask import request
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from werkzeug.exceptions import UnsupportedMediaType

from app.clock import parse_rfc3339
from app.services.errors import InvalidInput

# The only body the OAuth endpoints take (RFC 6749 §4.4.2), also where rate limiting looks
# for a client_id.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_INTEGER = re.compile(r"^-?[0-9]{1,15}$")
_MAX_MESSAGE = 200


def _strict_integer(_checker: Any, instance: Any) -> bool:
    # Python counts True as an integer; JSON does not. (An integral number such as 2.0 is an
    # integer in JSON Schema: json_body turns it into 2 before validation.)
    return isinstance(instance, int) and not isinstance(instance, bool)


StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value

_validators: dict[int, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    found = _validators.get(id(schema))
    if found is None:
        StrictValidator.check_schema(schema)
        found = _validators[id(schema)] = StrictValidator(schema)
    return found


def _describe(error: ValidationError, schema: dict[str, Any]) -> InvalidInput:
    """One clear message naming the offending field (never echoing an unknown field's value)."""
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(str(name) for name in instance if name not in known)
        field = unknown[0] if unknown else None
        return InvalidInput(f"unknown field {field!r}; allowed: {', '.join(sorted(known))}",
                            field=field)
    if error.validator == "not" and isinstance(error.validator_value, dict):
        exclusive = error.validator_value.get("required", [])
        field = exclusive[0] if exclusive else None
        return InvalidInput(f"give only one of {', '.join(exclusive)}", field=field)
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in error.validator_value if name not in instance]
        field = missing[0] if missing else None
        return InvalidInput(f"missing required field {field!r}", field=field)
    path = [str(part) for part in error.absolute_path]
    field = path[0] if path else None
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    where = ".".join(path)
    return InvalidInput(f"{where}: {message}" if where else message, field=field)


def validate(instance: Any, schema: dict[str, Any]) -> dict[str, Any]:
    error = best_match(_validator(schema).iter_errors(instance))
    if error is not None:
        raise _describe(error, schema)
    return instance


# json.loads joins an escaped surrogate pair into one character, so whatever surrogate is left
# is a lone one: not Unicode, and the database drivers (and UTF-8 encoders) refuse it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(data: Any) -> InvalidInput | None:
    """A 400 naming the first field whose value (or name) holds a lone UTF-16 surrogate."""
    # Iterative: a body nested as deep as json.loads allows must not exhaust the stack here.
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                # The path is echoed, never the value; a name is echoed with U+FFFD in place
                # of its surrogates so the answer itself stays valid UTF-8.
                shown = [_SURROGATE.sub("\ufffd", part) for part in path]
                where = ".".join(shown)
                return InvalidInput(f"{where}: not valid Unicode (lone UTF-16 surrogate)",
                                    field=shown[0] if shown else None)
        elif isinstance(value, dict):
            for name, item in reversed(value.items()):
                if _SURROGATE.search(name):
                    stack.append(((*path, name), name))
                stack.append(((*path, name), item))
        elif isinstance(value, list):
            stack.extend(((*path, str(index)), item)
                         for index, item in reversed(list(enumerate(value))))
    return None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise InvalidInput(f"field {name!r} appears more than once", field=name)
        result[name] = value
    return result


def json_body(schema: dict[str, Any], *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, validated; an absent body is {} when `optional`."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return validate({}, schema)
        raise InvalidInput("the request body must be a JSON object")
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json.")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant, parse_float=_number)
    except InvalidInput:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    # Before the schema: its messages quote the offending value.
    bad_text = _lone_surrogate(data)
    if bad_text is not None:
        raise bad_text
    return validate(data, schema)


def query_args(schema: dict[str, Any]) -> dict[str, Any]:
    """Query parameters as one object (integers converted), validated like a body."""
    properties = schema.get("properties", {})
    values: dict[str, Any] = {}
    for name in request.args:
        given = request.args.getlist(name)
        if len(given) > 1:
            raise InvalidInput(f"parameter {name!r} was sent more than once", field=name)
        value: Any = given[0]
        if properties.get(name, {}).get("type") == "integer":
            if not _INTEGER.match(value):
                raise InvalidInput(f"{name} must be an integer", field=name)
            value = int(value)
        values[name] = value
    return validate(values, schema)


def timestamp(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 body value as aware UTC; a bad one is a 400 naming the field."""
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None
