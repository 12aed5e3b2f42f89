"""The configuration reference, generated from the :class:`~devintel.daemon.settings.Settings` model.

:func:`reference_markdown` walks ``Settings.model_fields`` and the nested sections (``BaseModel`` fields) and
documents every leaf setting: its environment variable, its TOML key, type, default, constraints and
description. Nothing is written by hand per setting, so the reference cannot drift from the model;
``tests/test_settings_reference.py`` checks that the committed ``docs/configuration.md`` is current.
Regenerate it with::

    .venv/bin/python -m devintel.daemon.settings_reference > docs/configuration.md
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Final

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from devintel.contract import HOME_TYPES
from devintel.daemon.settings import ENV_PREFIX, Settings

__all__ = ["REGENERATE", "SettingDoc", "main", "reference_markdown", "setting_docs"]

#: The command that regenerates ``docs/configuration.md``.
REGENERATE: Final = ".venv/bin/python -m devintel.daemon.settings_reference > docs/configuration.md"
#: The delimiter between a section and a field, in environment variable and credential file names.
NESTED_DELIMITER: Final = "__"

#: Checks that ``Settings.model_post_init`` makes beyond the field metadata, by dotted setting name.
_EXTRA_CONSTRAINTS: Final[dict[str, str]] = {
    "home_type": "one of " + ", ".join(f"`{name}`" for name in HOME_TYPES),
}

_TYPE_NAMES: Final[dict[object, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """What the reference says about one leaf setting."""

    section: str | None
    """The section (``mqtt``), or ``None`` for a top-level setting."""
    name: str
    """The field name within its section (``host``)."""
    env: str
    """The environment variable (``DEVINTEL_MQTT__HOST``)."""
    toml: str
    """The TOML key (``[mqtt] host``, or ``model_dir`` at the top of the file)."""
    credential_file: str
    """The file name in ``$CREDENTIALS_DIRECTORY`` that holds it (``mqtt__host``)."""
    type: str
    default: str
    constraints: str
    description: str
    secret: bool

    @property
    def dotted(self) -> str:
        """``section.name``, or ``name`` at the top level."""
        return self.name if self.section is None else f"{self.section}.{self.name}"


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model class of a section field, or ``None`` for a leaf."""
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _optional_parts(annotation: object) -> tuple[list[object], bool]:
    """The member types of ``annotation`` without ``None``, and whether ``None`` was one of them."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = list(typing.get_args(annotation))
        return [m for m in members if m is not type(None)], type(None) in members
    return [annotation], False


def _type_name(annotation: object) -> str:
    members, optional = _optional_parts(annotation)
    names = " or ".join(_TYPE_NAMES.get(m, getattr(m, "__name__", str(m))) for m in members)
    return f"{names}, optional" if optional else names


def _is_secret(annotation: object) -> bool:
    members, _ = _optional_parts(annotation)
    return SecretStr in members


def _toml_value(value: object) -> str:
    """A default as it would be spelled in the TOML file."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, int | float):
        return f"`{value!r}`"
    if isinstance(value, str | PurePath):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _constraints(dotted: str, field: FieldInfo) -> str:
    parts: list[str] = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"at least {item.min_length} character{'s' if item.min_length != 1 else ''}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {item.max_length} characters")
        else:
            parts.append(str(item))
    extra = _EXTRA_CONSTRAINTS.get(dotted)
    if extra:
        parts.append(extra)
    return ", ".join(parts) or "none"


def _leaf(section: str | None, name: str, field: FieldInfo) -> SettingDoc:
    path = name if section is None else f"{section}{NESTED_DELIMITER}{name}"
    dotted = name if section is None else f"{section}.{name}"
    return SettingDoc(
        section=section,
        name=name,
        env=f"{ENV_PREFIX}{path.upper()}",
        toml=name if section is None else f"[{section}] {name}",
        credential_file=path.lower(),
        type=_type_name(field.annotation),
        default=_toml_value(field.get_default(call_default_factory=True)),
        constraints=_constraints(dotted, field),
        description=field.description or "",
        secret=_is_secret(field.annotation),
    )


def setting_docs() -> Iterator[SettingDoc]:
    """Every leaf setting of :class:`Settings`: the top-level ones first, then each section's, in model order."""
    sections: list[tuple[str, type[BaseModel]]] = []
    for name, field in Settings.model_fields.items():
        model = _section_model(field)
        if model is None:
            yield _leaf(None, name, field)
        else:
            sections.append((name, model))
    for section, model in sections:
        for name, field in model.model_fields.items():
            if _section_model(field) is not None:
                raise TypeError(f"{section}.{name}: sections nested deeper than one level are not documented")
            yield _leaf(section, name, field)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _first_line(doc: str | None) -> str:
    """The first line of a docstring, with reStructuredText's double backquotes made Markdown's single ones."""
    return doc.strip().splitlines()[0].replace("``", "`") if doc and doc.strip() else ""


def _table(docs: list[SettingDoc]) -> list[str]:
    lines = [
        "| environment variable | TOML key | type | default | constraints | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for doc in docs:
        description = doc.description
        if doc.secret:
            description = (
                f"**secret**: {description}; masked in `--validate-config` output; "
                f"as a credential: the file `{doc.credential_file}`"
            )
        cells = [f"`{doc.env}`", f"`{doc.toml}`", doc.type, doc.default, doc.constraints, description]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines


_HEADER: Final = """\
# Configuration reference

<!-- Generated from the Settings model (src/devintel/daemon/settings.py); do not edit by hand. Regenerate with
     {regenerate}
     (tests/test_settings_reference.py fails when this file is out of date). -->

devintel has one strict settings model (pydantic-settings, `devintel.daemon.settings.Settings`). Every setting
below can be given in any of these sources; **highest priority first**:

1. **environment variables** `DEVINTEL_*`, nested with `__`: `DEVINTEL_MQTT__HOST` sets `host` in the `mqtt`
   section;
2. a **`.env` file** in the working directory, with the same names (`NAME=value` lines; every name in it must
   be a `DEVINTEL_*` setting: any other name is an error too);
3. the **TOML file** given with `--config` (`devintel-daemon`, `devintel replay`, `devintel models`,
   `devintel report`): top-level keys first, then one table per section (`[mqtt]`);
4. **files in `$CREDENTIALS_DIRECTORY`** (systemd's `LoadCredential=`): the file name is the setting's name in
   lower case, nested with `__` (the file `mqtt__password` holds `mqtt.password`, a file `model_dir` would hold
   `model_dir`); the content is the value, a trailing newline dropped;
5. the **defaults** listed here.

Sources are merged setting by setting: `DEVINTEL_MQTT__PORT=1884` in the environment and `host = "broker.lan"`
under `[mqtt]` in the TOML file give both. Unknown keys are an error in every source (a `DEVINTEL_*` variable,
a TOML key or a credential file that names no setting), and so is any invalid value: a typo fails at start
instead of being ignored. `devintel-daemon --validate-config` checks every source and prints the resulting
settings as JSON, secrets masked (exit 0), or the error (exit 2).

`devintel-daemon` (the service, its bootstrap, `POST /models/refresh` and `--simulate` included), `devintel
bootstrap`, `devintel replay`, `devintel models` and `devintel report` read these settings, and map them to what
they configure in one place (`devintel.daemon.from_settings`). `devintel bootstrap`'s options (`--samples`,
`--holdout-samples`, `--days`, `--seed`, `--model-dir`, `--keep`) override `bootstrap.*`, `model_dir` and
`snapshot.keep`; it gates with `quality.*` and `horizon_days` and signs with `snapshot.signing_key`.

Besides each field's own constraints, these are checked together: `mqtt.ca_file` needs `mqtt.tls`, `mqtt.password`
needs `mqtt.username`, and `home_type` is one of the eight home types.

Keep secrets out of the environment and the TOML file where you can: `mqtt.password` and `http.token` belong in
`$CREDENTIALS_DIRECTORY` (the systemd unit loads `mqtt__password` from `/etc/devintel/mqtt_password`).

Example TOML file:

```toml
model_dir = "/var/lib/devintel/models"
home_type = "apartment"

[mqtt]
host = "broker.lan"
username = "devintel"

[ha]
prefix = "homeassistant"
```

Defaults are spelled as in TOML; in the environment write the bare value (`DEVINTEL_MQTT__TLS=true`,
`DEVINTEL_MODEL_DIR=/var/lib/devintel/models`). "Unset" means no value (`None`). Durations ending in `_s` are
seconds, `_days` days; "stream time" is event time (the largest event time seen), not the wall clock.
"""


def reference_markdown() -> str:
    """The configuration reference (Markdown) of every setting of :class:`Settings`, from the model itself."""
    docs = list(setting_docs())
    lines = [_HEADER.format(regenerate=REGENERATE).rstrip("\n")]
    top = [doc for doc in docs if doc.section is None]
    if top:
        lines += ["", "## Top level", "", "TOML: keys at the top of the file, before any table.", "", *_table(top)]
    for name, field in Settings.model_fields.items():
        model = _section_model(field)
        if model is None:
            continue
        title = f"## `[{name}]`: {field.description}" if field.description else f"## `[{name}]`"
        summary = _first_line(model.__doc__)
        lines += ["", title, ""]
        if summary:
            lines += [summary, ""]
        lines += _table([doc for doc in docs if doc.section == name])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the reference to standard output (``python -m devintel.daemon.settings_reference``)."""
    del argv  # no options
    sys.stdout.write(reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
