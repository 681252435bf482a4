"""axe-core in the real browser: run it on a page, report what it found.

The engine is vendored (``vendor/axe-core/``, see its README): injected into the
page under test, never served by the application. Only the WCAG 2.0 and 2.1
level A and AA rules run (axe's tags below), the level the pages promise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
#: axe's tags of the success criteria of WCAG 2.0 and 2.1, levels A and AA.
WCAG_21_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")

RUN_AXE = """async (tags) => {
    const results = await window.axe.run(document, {
        runOnly: { type: "tag", values: tags },
        resultTypes: ["violations"],
    });
    return results.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
    }));
}"""


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """The WCAG 2.1 A/AA violations axe finds on the page as it is now (injected once per page)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(RUN_AXE, list(WCAG_21_AA))


def node_count(violations: list[dict[str, Any]]) -> int:
    return sum(len(violation["nodes"]) for violation in violations)


def describe(name: str, violations: list[dict[str, Any]]) -> str:
    """One page's violations for a failure message: rule, impact, then each element and why."""
    lines = [f"{name}: {len(violations)} rule(s), {node_count(violations)} element(s)"]
    for violation in violations:
        lines.append(f"  [{violation['impact']}] {violation['id']}: {violation['help']}")
        for node in violation["nodes"]:
            summary = " ".join(str(node["summary"] or "").split())
            lines.append(f"    {node['target']}: {summary}")
    return "\n".join(lines)
