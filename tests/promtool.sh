#!/usr/bin/env bash
# Checks the Prometheus alert rules of dashboards/alerts/ with promtool (Debian's
# prometheus package): syntax (`check rules`) and their unit tests (`test rules`), and
# that every dashboard is valid JSON. tests/run.sh calls this.
set -euo pipefail
cd "$(dirname "$0")/../dashboards"

promtool check rules alerts/nvlb-alerts.yml
(cd alerts && promtool test rules nvlb-alerts.test.yml)
for f in *.json; do
  /usr/bin/python3 -m json.tool "$f" >/dev/null || { echo "invalid JSON: $f" >&2; exit 1; }
done
echo "promtool: rules checked and tested; dashboards are valid JSON"
