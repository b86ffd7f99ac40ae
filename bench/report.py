"""A benchmark's write-up: command, machine, a table of figures, targets and notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import machine


@dataclass
class Report:
    """One benchmark's results as printed and as recorded in bench/RESULTS.md."""

    title: str
    command: str = field(default_factory=machine.command_line)
    machine: str = field(default_factory=machine.facts)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    targets: list[tuple[str, bool | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def target(self, name: str, met: bool | None, figure: str) -> None:
        """Record a target, whether it was met (None: not measurable in this run), the figure."""
        self.targets.append((name, met, figure))

    def markdown(self) -> str:
        """The section for RESULTS.md."""
        lines = [f"## {self.title}", "", f"    {self.command}", ""]
        lines += [f"Machine: {self.machine}; load average at the end {machine.load_average()}.", ""]
        if self.header:
            lines.append("| " + " | ".join(self.header) + " |")
            lines.append("|" + "---|" * len(self.header))
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines.append("")
        for name, met, figure in self.targets:
            verdict = {True: "**met**", False: "**missed**", None: "not measured"}[met]
            lines.append(f"- Target {name}: {verdict} ({figure})")
        if self.targets:
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"
