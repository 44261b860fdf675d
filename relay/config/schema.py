"""Print the JSON Schema of relay.yaml, generated from the config model.

`make schema` writes it to config/relay.schema.json; a test keeps the two in sync.
Editors use it (e.g. `# yaml-language-server: $schema=config/relay.schema.json`).
"""

from __future__ import annotations

import json

from relay.config.model import Config


def schema() -> dict[str, object]:
    document = Config.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "oneroute-relay configuration (relay.yaml)",
        **{key: value for key, value in document.items() if key != "title"},
    }


def main() -> None:
    print(json.dumps(schema(), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
