"""A small Dockerfile reader for tests: stages, instructions (continuations joined, comments dropped), exec forms."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """CMD/HEALTHCHECK CMD/ENTRYPOINT in JSON (exec) form; the shell form is refused (signals, PID 1)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{self.keyword} is not exec form"
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                values[name] = value
        return values

    def copies_from_context(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of every COPY that reads the build context (not --from another stage)."""
        copies = []
        for instruction in self.all("COPY"):
            parts = shlex.split(instruction.args)
            if any(p.startswith("--from") for p in parts):
                continue
            parts = [p for p in parts if not p.startswith("--")]
            copies.append((parts[:-1], parts[-1]))
        return copies


def parse_dockerfile(path: Path) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            assert match, f"unreadable FROM: {args}"
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, re.sub(r"\s+", " ", args)))
    return stages
