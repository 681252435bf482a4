"""Declared inputs: field types, validation, defaults, JSON Schema; plus properties
that must hold for any JSON value a client can send."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from executions.errors import InputsInvalidError
from executions.registry import (
    JSON_SCHEMA_DIALECT,
    MISSING,
    Boolean,
    FieldError,
    Integer,
    Number,
    String,
    Target,
    agent,
    all_targets,
    get_target,
    pipeline,
    register,
)

jsonschema = pytest.importorskip("jsonschema")


def noop(ctx: Any) -> dict[str, Any]:
    return {}


EVERY_FIELD = Target(
    type="pipeline",
    target_id="test_registry_every_field",
    run=noop,
    steps=["one"],
    inputs={
        "count": Integer(minimum=1, maximum=10),
        "ratio": Number(minimum=0, maximum=1, default=0.5),
        "name": String(min_length=1, max_length=5, default="x"),
        "flag": Boolean(default=False),
        "limit": Integer(default=None, nullable=True, minimum=0),
    },
)

# Any value Python's json module can produce, infinities and NaN included
# (``1e400`` parses as infinity), and integers far beyond a float's range.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


# --- fields ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, -5, 10**20])
def test_integer_accepts_json_integers(value: int) -> None:
    assert Integer().validate(value) == value


@pytest.mark.parametrize("value", ["5", 5.5, 5.0, True, False, [5], {"v": 5}, math.inf, math.nan])
def test_integer_refuses_everything_else(value: Any) -> None:
    with pytest.raises(FieldError, match="valid integer"):
        Integer().validate(value)


def test_integer_range_is_inclusive() -> None:
    field = Integer(minimum=1, maximum=3)
    assert [field.validate(v) for v in (1, 2, 3)] == [1, 2, 3]
    with pytest.raises(FieldError, match="greater than or equal to 1"):
        field.validate(0)
    with pytest.raises(FieldError, match="less than or equal to 3"):
        field.validate(4)


@pytest.mark.parametrize("value", [0, 1.5, -2, 10**400, 1e300])
def test_number_accepts_finite_numbers(value: float) -> None:
    assert Number().validate(value) == value


@pytest.mark.parametrize("value", ["1.5", True, None, math.inf, -math.inf, math.nan, [1.0]])
def test_number_refuses_everything_else(value: Any) -> None:
    with pytest.raises(FieldError):
        Number().validate(value)


def test_number_range_with_huge_integers() -> None:
    field = Number(minimum=0, maximum=60)
    with pytest.raises(FieldError, match="less than or equal to 60"):
        field.validate(10**400)
    with pytest.raises(FieldError, match="greater than or equal to 0"):
        field.validate(-(10**400))


def test_string_length_limits() -> None:
    field = String(min_length=1, max_length=3)
    assert field.validate("abc") == "abc"
    with pytest.raises(FieldError, match="may not be blank"):
        field.validate("")
    with pytest.raises(FieldError, match="no more than 3"):
        field.validate("abcd")
    with pytest.raises(FieldError, match="at least 2"):
        String(min_length=2).validate("a")
    for value in (5, None, ["a"], True):
        with pytest.raises(FieldError):
            field.validate(value)


def test_boolean_is_strict() -> None:
    assert Boolean().validate(True) is True
    assert Boolean().validate(False) is False
    for value in (0, 1, "true", None):
        with pytest.raises(FieldError):
            Boolean().validate(value)


def test_null_only_where_declared_nullable() -> None:
    assert Integer(nullable=True).validate(None) is None
    with pytest.raises(FieldError, match="may not be null"):
        Integer().validate(None)


def test_required_is_the_absence_of_a_default() -> None:
    assert Integer().required
    assert not Integer(default=None, nullable=True).required
    assert Integer().default is MISSING


# --- validate_inputs -------------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    assert EVERY_FIELD.validate_inputs({"count": 2}) == {
        "count": 2, "ratio": 0.5, "name": "x", "flag": False, "limit": None,
    }


def test_given_values_are_kept() -> None:
    given_inputs = {"count": 10, "ratio": 1, "name": "abcde", "flag": True, "limit": 0}
    assert EVERY_FIELD.validate_inputs(given_inputs) == given_inputs


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InputsInvalidError) as caught:
        EVERY_FIELD.validate_inputs({"ratio": "1", "name": "", "flag": 1, "extra": 1, "other": None})
    errors = caught.value.errors
    assert set(errors) == {"count", "ratio", "name", "flag", "extra", "other"}
    assert errors["count"] == ["This field is required."]
    assert errors["extra"] == ["Unknown input."]
    assert all(isinstance(m, str) and m for messages in errors.values() for m in messages)


@pytest.mark.parametrize("raw", [[], "x", 5, None, True, [{"count": 1}]])
def test_inputs_must_be_an_object(raw: Any) -> None:
    with pytest.raises(InputsInvalidError) as caught:
        EVERY_FIELD.validate_inputs(raw)
    assert caught.value.errors == {"non_field_errors": ["Expected an object."]}


def test_any_object_when_no_inputs_are_declared() -> None:
    echo = get_target("agent", "echo")
    assert echo is not None and echo.inputs is None
    raw = {"anything": [1, {"x": None}], "": 1}
    assert echo.validate_inputs(raw) == raw
    with pytest.raises(InputsInvalidError):
        echo.validate_inputs(["not", "an", "object"])


def test_demo_steps_cross_check_runs_on_valid_inputs_only() -> None:
    demo = get_target("pipeline", "demo_steps")
    assert demo is not None
    assert demo.validate_inputs({"steps": 3, "fail_at_step": 3})["fail_at_step"] == 3
    with pytest.raises(InputsInvalidError) as caught:
        demo.validate_inputs({"steps": 3, "fail_at_step": 4})
    assert set(caught.value.errors) == {"fail_at_step"}
    with pytest.raises(InputsInvalidError) as caught:
        demo.validate_inputs({"steps": "3", "fail_at_step": 4})
    assert set(caught.value.errors) == {"steps"}
    with pytest.raises(InputsInvalidError) as caught:
        demo.validate_inputs({"fail_at_step": 6})
    assert set(caught.value.errors) == {"fail_at_step"}, "checked against the default of 5 steps"


def test_demo_durable_declares_its_inputs_like_demo_steps() -> None:
    demo = get_target("pipeline", "demo_durable")
    assert demo is not None and demo.durable
    assert demo.validate_inputs({}) == {"steps": 6, "step_seconds": 1.0, "fail_at_step": None}
    assert demo.step_names({"steps": 2}) == ["step_1", "step_2"]
    schema = demo.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["steps"] == {
        "type": "integer", "minimum": 1, "maximum": 1000, "default": 6, "description": "How many steps to run.",
    }
    assert schema["properties"]["fail_at_step"]["type"] == ["integer", "null"]
    assert schema["required"] == []
    with pytest.raises(InputsInvalidError) as caught:
        demo.validate_inputs({"steps": 1001})
    assert set(caught.value.errors) == {"steps"}
    with pytest.raises(InputsInvalidError) as caught:
        demo.validate_inputs({"fail_at_step": 7})
    assert set(caught.value.errors) == {"fail_at_step"}, "checked against the default of 6 steps"


def test_steps_static_or_from_inputs() -> None:
    demo = get_target("pipeline", "demo_steps")
    flow = get_target("pipeline", "customer_service_flow")
    assert demo is not None and flow is not None
    assert demo.static_steps is None
    assert demo.step_names({"steps": 3}) == ["step_1", "step_2", "step_3"]
    assert flow.static_steps == ["classify", "retrieve", "respond"]
    assert flow.step_names({}) == flow.static_steps


# --- JSON Schema ---------------------------------------------------------------------------------


def test_schema_describes_types_limits_and_defaults() -> None:
    schema = EVERY_FIELD.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == {
        "$schema": JSON_SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": 10},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
            "name": {"type": "string", "minLength": 1, "maxLength": 5, "default": "x"},
            "flag": {"type": "boolean", "default": False},
            "limit": {"type": ["integer", "null"], "minimum": 0, "default": None},
        },
        "required": ["count"],
        "additionalProperties": False,
    }


def test_schema_carries_the_description() -> None:
    assert Integer(description="How many.").schema()["description"] == "How many."
    assert "description" not in Integer().schema()


def test_every_registered_target_has_a_valid_schema() -> None:
    targets = all_targets()
    assert {(t.type, t.target_id) for t in targets} >= {
        ("pipeline", "demo_steps"), ("pipeline", "demo_durable"), ("pipeline", "customer_service_flow"),
        ("agent", "echo"),
    }
    for target in targets:
        jsonschema.Draft202012Validator.check_schema(target.input_schema())


# --- registration ------------------------------------------------------------------------------------


def test_decorators_register_pipelines_and_agents() -> None:
    @pipeline("test_registry_declared", steps=["a", "b"], inputs={"n": Integer(default=1)})
    def declared(ctx: Any) -> dict[str, Any]:
        """Says what it does."""
        return {}

    @agent("test_registry_agent")
    def declared_agent(ctx: Any) -> dict[str, Any]:
        return {}

    target = get_target("pipeline", "test_registry_declared")
    assert target is not None and target.run is declared
    assert target.description == "Says what it does."
    assert get_target("agent", "test_registry_declared") is None
    agent_target = get_target("agent", "test_registry_agent")
    assert agent_target is not None
    assert agent_target.inputs is None and agent_target.static_steps == ["run"]
    assert get_target("pipeline", "test_registry_agent") is None
    assert not target.durable and not agent_target.durable, "not durable unless declared"


def test_durable_is_declared_on_pipelines_and_agents() -> None:
    @pipeline("test_registry_durable_pipeline", steps=["a"], durable=True)
    def durable_pipeline(ctx: Any) -> dict[str, Any]:
        return {}

    @agent("test_registry_durable_agent", durable=True)
    def durable_agent(ctx: Any) -> dict[str, Any]:
        return {}

    declared = [
        get_target("pipeline", "test_registry_durable_pipeline"), get_target("agent", "test_registry_durable_agent")
    ]
    assert all(target is not None and target.durable for target in declared)


def test_an_id_cannot_be_taken_twice() -> None:
    register(Target(type="agent", target_id="test_registry_taken", run=noop, steps=["s"], inputs=None))
    register(Target(type="agent", target_id="test_registry_taken", run=noop, steps=["s"], inputs=None))

    def other(ctx: Any) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        register(Target(type="agent", target_id="test_registry_taken", run=other, steps=["s"], inputs=None))
    target = get_target("agent", "test_registry_taken")
    assert target is not None and target.run is noop


# --- properties -----------------------------------------------------------------------------------------


def is_json_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@given(value=json_values, bounds=st.tuples(st.integers(-100, 100), st.integers(0, 200)))
@example(value=10**400, bounds=(0, 10))
@example(value=True, bounds=(0, 10))
@example(value=5.0, bounds=(0, 10))
@example(value="5", bounds=(0, 10))
def test_integers_accept_exactly_the_json_integers_in_range(value: Any, bounds: tuple[int, int]) -> None:
    low, span = bounds
    field = Integer(minimum=low, maximum=low + span)
    if is_json_int(value) and low <= value <= low + span:
        assert field.validate(value) == value
    else:
        with pytest.raises(FieldError) as caught:
            field.validate(value)
        assert str(caught.value)


@given(value=json_values)
@example(value=10**400)
@example(value=float("nan"))
def test_numbers_accept_exactly_the_finite_json_numbers_in_range(value: Any) -> None:
    field = Number(minimum=0, maximum=60)
    is_number = is_json_int(value) or (isinstance(value, float) and math.isfinite(value))
    if is_number and 0 <= value <= 60:
        assert field.validate(value) == value
    else:
        with pytest.raises(FieldError) as caught:
            field.validate(value)
        assert str(caught.value)


inputs_like = st.dictionaries(
    st.sampled_from(
        ["count", "ratio", "name", "flag", "limit", "steps", "step_seconds", "fail_at_step", "customer_query"]
    )
    | st.text(max_size=8),
    json_values,
    max_size=6,
)


@settings(max_examples=300)
@given(raw=json_values | inputs_like, target_key=st.sampled_from(
    [("pipeline", "demo_steps"), ("pipeline", "customer_service_flow"), ("agent", "echo"), None]
))
@example(raw={"step_seconds": 10**400}, target_key=("pipeline", "demo_steps"))
@example(raw={"steps": 10**400, "fail_at_step": 10**400}, target_key=("pipeline", "demo_steps"))
@example(raw={"ratio": 10**400, "count": 1}, target_key=None)
def test_validate_inputs_raises_nothing_but_inputs_invalid(raw: Any, target_key: tuple[str, str] | None) -> None:
    target = EVERY_FIELD if target_key is None else get_target(*target_key)
    assert target is not None
    try:
        cleaned = target.validate_inputs(raw)
    except InputsInvalidError as exc:
        # A property, not one case: raising is allowed, then the errors must be well-formed.
        assert isinstance(exc.errors, dict) and exc.errors  # noqa: PT017 - see above
        for key, messages in exc.errors.items():
            assert isinstance(key, str)
            assert isinstance(messages, list) and messages
            assert all(isinstance(m, str) and m for m in messages)
        return
    assert isinstance(cleaned, dict)
    if target.inputs is not None:
        assert set(cleaned) == set(target.inputs), "every declared input, defaults filled"
        # Whatever the registry accepts, its published schema accepts too.
        validator = jsonschema.Draft202012Validator(target.input_schema())
        assert validator.is_valid(raw), raw
        assert validator.is_valid(cleaned), cleaned
