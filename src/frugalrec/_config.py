"""One base for typed configs that round-trip through JSON (models, pipelines)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Self


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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown field(s) {unknown}; valid fields: {sorted(names)}"
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)
