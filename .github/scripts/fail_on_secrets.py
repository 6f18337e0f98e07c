"""Fail the secret scan when detect-secrets reports anything (read from stdin)."""

import json
import sys


def main() -> int:
    report = json.load(sys.stdin)
    findings = [
        f"{path}:{item['line_number']} ({item['type']})"
        for path, items in report.get("results", {}).items()
        for item in items
    ]
    for finding in findings:
        print(f"possible secret: {finding}")
    print(f"{len(findings)} possible secrets found")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
