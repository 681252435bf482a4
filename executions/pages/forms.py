"""Forms of the pages: the list filters and the start form.

The start form is generated from a target's input schema (the JSON Schema that
``GET /api/v1/targets`` serves), never written per target; the registry still
has the last word at submit (``execution_create`` validates again, and its
messages land next to the same fields).
"""

from __future__ import annotations

from typing import Any

from django import forms

from executions.models import ExecutionStatus, ExecutionType
from executions.registry import Target, all_targets

#: Strings longer than this get a textarea rather than a one-line input.
TEXTAREA_FROM_LENGTH = 200
INPUT_PREFIX = "input_"
#: The single field of a target that accepts any JSON object (``inputs=None``).
FREE_INPUTS_FIELD = "inputs_json"
TIMEOUT_FIELD = "config_timeout"


def target_key(target: Target) -> str:
    return f"{target.type}:{target.target_id}"


def target_for_key(key: str | None) -> Target | None:
    return next((t for t in all_targets() if target_key(t) == key), None)


def _label(name: str) -> str:
    return name.replace("_", " ").strip().capitalize() or name


def _schema_types(prop: dict[str, Any]) -> tuple[str | None, bool]:
    """(the non-null JSON type, whether null is allowed)."""
    declared = prop.get("type")
    types = declared if isinstance(declared, list) else [declared]
    nullable = "null" in types
    concrete = [t for t in types if t and t != "null"]
    return (concrete[0] if len(concrete) == 1 else None), nullable


def _limits_hint(prop: dict[str, Any], json_type: str | None) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if json_type == "string":
        low, high = prop.get("minLength"), prop.get("maxLength")
        if low and high:
            return f"{low} to {high} characters"
        return f"Up to {high} characters" if high else ""
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"At least {low:g}"
    if high is not None:
        return f"At most {high:g}"
    return ""


def field_for_schema(name: str, prop: dict[str, Any], *, required: bool) -> forms.Field:
    """One form field from one property of a JSON Schema object."""
    json_type, nullable = _schema_types(prop)
    required = required and not nullable
    default = prop.get("default")
    hints = [prop.get("description", ""), _limits_hint(prop, json_type)]
    if "default" in prop:
        shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else f"{default}"
        hints.append("Default: " + shown)
    common: dict[str, Any] = {
        "label": _label(name),
        "required": required,
        "help_text": " · ".join(h.rstrip(".") for h in hints if h),
        "initial": default,
    }
    if "enum" in prop:
        choices = [(value, str(value)) for value in prop["enum"]]
        if not required:
            choices.insert(0, ("", "---------"))
        return forms.TypedChoiceField(
            choices=choices, coerce=lambda v: next(c for c in prop["enum"] if str(c) == v), **common
        )
    if json_type == "integer":
        return forms.IntegerField(min_value=prop.get("minimum"), max_value=prop.get("maximum"), **common)
    if json_type == "number":
        return forms.FloatField(min_value=prop.get("minimum"), max_value=prop.get("maximum"), **common)
    if json_type == "boolean":
        return forms.BooleanField(**{**common, "required": False})
    if json_type == "string":
        max_length = prop.get("maxLength")
        widget = forms.Textarea(attrs={"rows": 3}) if max_length is None or max_length > TEXTAREA_FROM_LENGTH else None
        return forms.CharField(
            min_length=prop.get("minLength"), max_length=max_length, widget=widget, **common
        )
    # Objects, arrays, unions: edited as JSON text.
    return forms.JSONField(widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}), **common)


class ExecutionStartForm(forms.Form):
    """A target's declared inputs, plus the optional run timeout.

    Input fields are named ``input_<name>``; :meth:`inputs` returns the JSON
    object to submit, leaving out empty optional fields so that the target's
    defaults apply.
    """

    target = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, target: Target, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chosen_target = target
        self.fields["target"].initial = target_key(target)
        schema = target.input_schema()
        self.free_form = "properties" not in schema
        self.input_fields: dict[str, str] = {}
        if self.free_form:
            self.fields[FREE_INPUTS_FIELD] = forms.JSONField(
                label="Inputs",
                initial={},
                required=False,
                help_text="Any JSON object; it is passed to the target as it is.",
                widget=forms.Textarea(attrs={"rows": 6, "class": "mono", "spellcheck": "false"}),
            )
        else:
            required = set(schema.get("required", []))
            for name, prop in schema["properties"].items():
                field_name = INPUT_PREFIX + name
                self.fields[field_name] = field_for_schema(name, prop, required=name in required)
                self.input_fields[name] = field_name
        self.fields[TIMEOUT_FIELD] = forms.FloatField(
            label="Timeout (seconds)",
            required=False,
            min_value=0.001,
            help_text="Optional. The run fails with a TimeoutError once this much time has passed since it started.",
        )

    def clean_target(self) -> str:
        value = self.cleaned_data["target"]
        if value != target_key(self.chosen_target):
            raise forms.ValidationError("The target changed; choose it again.")
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        free_inputs = cleaned.get(FREE_INPUTS_FIELD) if self.free_form else None
        if free_inputs is not None and not isinstance(free_inputs, dict):
            self.add_error(FREE_INPUTS_FIELD, "Enter a JSON object, e.g. {\"message\": \"hello\"}.")
        return cleaned

    def input_bound_fields(self) -> list[forms.BoundField]:
        names = [FREE_INPUTS_FIELD] if self.free_form else list(self.input_fields.values())
        return [self[name] for name in names]

    def inputs(self) -> dict[str, Any]:
        if self.free_form:
            return self.cleaned_data.get(FREE_INPUTS_FIELD) or {}
        out: dict[str, Any] = {}
        for name, field_name in self.input_fields.items():
            value = self.cleaned_data.get(field_name)
            field = self.fields[field_name]
            if value in (None, "") and not isinstance(field, forms.BooleanField):
                continue  # empty: the declared default applies
            out[name] = value
        return out

    def config(self) -> dict[str, Any]:
        timeout = self.cleaned_data.get(TIMEOUT_FIELD)
        return {"timeout": timeout} if timeout else {}

    def add_input_errors(self, errors: dict[str, list[str]]) -> None:
        """Place the registry's per-input messages next to their fields."""
        for name, messages in errors.items():
            field_name = FREE_INPUTS_FIELD if self.free_form else self.input_fields.get(name)
            for message in messages:
                self.add_error(field_name, message if field_name else f"{name}: {message}")


class ExecutionFilterForm(forms.Form):
    """The list page's filters; an invalid value is reported, not a 500."""

    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *ExecutionStatus.choices])
    type = forms.ChoiceField(required=False, choices=[("", "Any type"), *ExecutionType.choices])
    target_id = forms.ChoiceField(required=False, label="Target")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target_ids = sorted({t.target_id for t in all_targets()})
        target_field = self.fields["target_id"]
        assert isinstance(target_field, forms.ChoiceField)
        target_field.choices = [("", "Any target"), *((t, t) for t in target_ids)]

    def selectors_kwargs(self) -> dict[str, str]:
        """The valid, non-empty filters (an invalid one is shown as an error and ignored)."""
        self.is_valid()
        return {key: value for key, value in self.cleaned_data.items() if value}
