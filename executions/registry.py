"""How a pipeline or an agent is declared, and how its inputs are checked.

A target is a function that takes a :class:`~executions.context.RunContext`
and returns its outputs. Its declaration names its steps and its inputs, each
a field that both validates a value and describes itself as JSON Schema, so
the API, the start form and the submit's validation cannot disagree::

    @pipeline("resize_images", steps=["fetch", "resize"], inputs={"width": Integer(minimum=1, default=800)})
    def resize_images(ctx): ...

A target declared ``durable=True`` enters its steps with ``ctx.step(name, fn)``:
each completed step's result is stored, and a run handed over to another worker
goes on at the first step not completed (``executions.steps``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputsInvalidError

if TYPE_CHECKING:
    from .context import RunContext

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FieldError(ValueError):
    """A value does not fit its declared field; the message is shown to the client."""


@dataclass(frozen=True)
class Field:
    """Base of the declared input types."""

    default: Any = MISSING
    nullable: bool = False
    description: str = ""

    json_type: str = field(default="", init=False, repr=False)

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def check(self, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def validate(self, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise FieldError("This field may not be null.")
        return self.check(value)

    def constraints(self) -> dict[str, Any]:
        return {}

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": [self.json_type, "null"] if self.nullable else self.json_type
        }
        schema.update(self.constraints())
        if self.default is not MISSING:
            schema["default"] = self.default
        if self.description:
            schema["description"] = self.description
        return schema


def _is_json_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Field):
    """A JSON integer: ``"5"``, ``5.5`` and ``true`` are refused (the contract)."""

    minimum: int | None = None
    maximum: int | None = None
    json_type: str = field(default="integer", init=False, repr=False)

    def check(self, value: Any) -> int:
        if not _is_json_int(value):
            raise FieldError("A valid integer is required.")
        _check_range(value, self.minimum, self.maximum)
        return value

    def constraints(self) -> dict[str, Any]:
        return _range_schema(self.minimum, self.maximum)


@dataclass(frozen=True)
class Number(Field):
    """A finite JSON number (integer or float, never a boolean or a string)."""

    minimum: float | None = None
    maximum: float | None = None
    json_type: str = field(default="number", init=False, repr=False)

    def check(self, value: Any) -> float:
        # An integer is always finite; math.isfinite() would overflow on one beyond a float.
        if not (_is_json_int(value) or (isinstance(value, float) and math.isfinite(value))):
            raise FieldError("A valid number is required.")
        _check_range(value, self.minimum, self.maximum)
        return value

    def constraints(self) -> dict[str, Any]:
        return _range_schema(self.minimum, self.maximum)


@dataclass(frozen=True)
class String(Field):
    min_length: int = 0
    max_length: int = 10_000
    json_type: str = field(default="string", init=False, repr=False)

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("A valid string is required.")
        if len(value) < self.min_length:
            raise FieldError(
                "This field may not be blank."
                if self.min_length == 1
                else f"Ensure this field has at least {self.min_length} characters."
            )
        if len(value) > self.max_length:
            raise FieldError(f"Ensure this field has no more than {self.max_length} characters.")
        return value

    def constraints(self) -> dict[str, Any]:
        out: dict[str, Any] = {"maxLength": self.max_length}
        if self.min_length:
            out["minLength"] = self.min_length
        return out


@dataclass(frozen=True)
class Boolean(Field):
    json_type: str = field(default="boolean", init=False, repr=False)

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldError("Must be a valid boolean.")
        return value


def _check_range(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise FieldError(f"Ensure this value is greater than or equal to {minimum}.")
    if maximum is not None and value > maximum:
        raise FieldError(f"Ensure this value is less than or equal to {maximum}.")


def _range_schema(minimum: float | None, maximum: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


TargetType = Literal["pipeline", "agent"]
StepsSpec = Sequence[str] | Callable[[Mapping[str, Any]], Sequence[str]]
CrossCheck = Callable[[Mapping[str, Any]], dict[str, list[str]]]


@dataclass(frozen=True)
class Target:
    """A registered pipeline or agent: its function, steps and declared inputs."""

    type: TargetType
    target_id: str
    run: Callable[[RunContext], Mapping[str, Any] | None]
    steps: StepsSpec
    #: None accepts any JSON object as inputs.
    inputs: Mapping[str, Field] | None
    cross_check: CrossCheck | None = None
    description: str = ""
    #: Steps entered with ``ctx.step`` store their results; a lost run is handed over, not failed.
    durable: bool = False

    @property
    def static_steps(self) -> list[str] | None:
        """The step names when they do not depend on the inputs."""
        return None if callable(self.steps) else list(self.steps)

    def step_names(self, inputs: Mapping[str, Any]) -> list[str]:
        return list(self.steps(inputs) if callable(self.steps) else self.steps)

    def validate_inputs(self, raw: Any) -> dict[str, Any]:
        """The inputs as they will run: checked, defaults filled in."""
        if not isinstance(raw, dict):
            raise InputsInvalidError({"non_field_errors": ["Expected an object."]})
        if self.inputs is None:
            return dict(raw)
        errors: dict[str, list[str]] = {}
        for key in raw:
            if key not in self.inputs:
                errors[str(key)] = ["Unknown input."]
        cleaned: dict[str, Any] = {}
        for name, spec in self.inputs.items():
            if name not in raw:
                if spec.required:
                    errors[name] = ["This field is required."]
                else:
                    cleaned[name] = spec.default
                continue
            try:
                cleaned[name] = spec.validate(raw[name])
            except FieldError as exc:
                errors[name] = [str(exc)]
        if not errors and self.cross_check is not None:
            errors = self.cross_check(cleaned)
        if errors:
            raise InputsInvalidError(errors)
        return cleaned

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of the accepted inputs."""
        if self.inputs is None:
            return {"$schema": JSON_SCHEMA_DIALECT, "type": "object", "additionalProperties": True}
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "type": "object",
            "properties": {name: spec.schema() for name, spec in self.inputs.items()},
            "required": [name for name, spec in self.inputs.items() if spec.required],
            "additionalProperties": False,
        }


_REGISTRY: dict[tuple[str, str], Target] = {}


def register(target: Target) -> Target:
    """Add a target to the registry; the same id with another function is an error."""
    key = (target.type, target.target_id)
    if key in _REGISTRY and _REGISTRY[key].run is not target.run:
        raise ValueError(f"{target.type} {target.target_id!r} is already registered")
    _REGISTRY[key] = target
    return target


def _declare(
    target_type: TargetType,
    target_id: str,
    *,
    steps: StepsSpec,
    inputs: Mapping[str, Field] | None,
    cross_check: CrossCheck | None,
    description: str,
    durable: bool,
) -> Callable[[Callable[[RunContext], Any]], Callable[[RunContext], Any]]:
    def decorator(func: Callable[[RunContext], Any]) -> Callable[[RunContext], Any]:
        register(
            Target(
                type=target_type,
                target_id=target_id,
                run=func,
                steps=steps,
                inputs=inputs,
                cross_check=cross_check,
                description=description or (func.__doc__ or "").strip(),
                durable=durable,
            )
        )
        return func

    return decorator


def pipeline(
    target_id: str,
    *,
    steps: StepsSpec,
    inputs: Mapping[str, Field] | None = None,
    cross_check: CrossCheck | None = None,
    description: str = "",
    durable: bool = False,
) -> Callable[[Callable[[RunContext], Any]], Callable[[RunContext], Any]]:
    """Declare a pipeline: an ordered list of named steps (``durable``: see the module docstring)."""
    return _declare(
        "pipeline", target_id, steps=steps, inputs=inputs if inputs is not None else {},
        cross_check=cross_check, description=description, durable=durable,
    )


def agent(
    target_id: str,
    *,
    steps: StepsSpec = ("run",),
    inputs: Mapping[str, Field] | None = None,
    cross_check: CrossCheck | None = None,
    description: str = "",
    durable: bool = False,
) -> Callable[[Callable[[RunContext], Any]], Callable[[RunContext], Any]]:
    """Declare an agent; ``inputs=None`` (the default) accepts any object."""
    return _declare(
        "agent", target_id, steps=steps, inputs=inputs, cross_check=cross_check,
        description=description, durable=durable,
    )


def get_target(target_type: str, target_id: str) -> Target | None:
    """The registered target, or None."""
    return _REGISTRY.get((target_type, target_id))


def all_targets() -> list[Target]:
    """Every registered target, by type then id."""
    return sorted(_REGISTRY.values(), key=lambda t: (t.type, t.target_id))
