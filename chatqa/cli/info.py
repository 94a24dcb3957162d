"""``chatqa info``: the resolved profile, model files, windows, and where indexes and caches live."""

from __future__ import annotations

import json

from chatqa.cli._app import Json, Profile, app


@app.command()
def info(profile: Profile = "default", json_out: Json = False) -> None:
    """Models, windows, cache and index folders."""
    from chatqa.info import collect

    data = collect(profile)
    if json_out:
        print(json.dumps(data))
        return
    for key, value in data.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  - {item}")
        else:
            print(f"{key}: {value}")
