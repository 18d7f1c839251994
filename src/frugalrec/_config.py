"""One base for typed configs that round-trip through JSON (models, pipelines)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Self


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Field annotations (strings, postponed) checked on load, so a wrong JSON type is named by
# field instead of failing later inside a comparison.
_SIMPLE_TYPES: dict[str, tuple[Any, str]] = {
    "int": (_is_int, "an integer"),
    "float": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}


@dataclasses.dataclass(frozen=True)
class JsonConfig:
    """Frozen dataclass with ``to_dict/to_json/from_dict/from_json/replace``.

    ``from_dict`` refuses unknown fields by name, so a typo in a config file is an error,
    never a silently ignored option.
    """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown field(s) {unknown}; valid fields: {sorted(fields)}"
            )
        for name, value in data.items():
            want = _SIMPLE_TYPES.get(str(fields[name].type))
            if want is not None and not want[0](value):
                raise ValueError(f"{cls.__name__}.{name}: expected {want[1]}, got {value!r}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)
