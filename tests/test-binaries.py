#!/usr/bin/python3
"""Lists the test binaries that `cargo test --no-run --message-format=json` built.

One line per binary: "PACKAGE KIND TARGET<TAB>EXECUTABLE<TAB>PACKAGE_FOLDER". tests/run.sh
runs each by itself, from its package's folder, as cargo test would.
"""
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        package = m["manifest_path"].rsplit("/", 1)[0]
        # "path+file:///DIR#NAME@VERSION", or "path+file:///DIR#VERSION" when the
        # folder has the package's name.
        url, _, frag = m["package_id"].partition("#")
        name = frag.split("@")[0] if "@" in frag else url.rstrip("/").rsplit("/", 1)[-1]
        print(name + " " + t["kind"][0] + " " + t["name"] + "\t" + m["executable"] + "\t" + package)
