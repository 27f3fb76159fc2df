"""Every `reverie` command in README.md works as written (issue 9).

README commands drift from the code: an option renamed, a subcommand moved, a typo nobody
ran. Two checks keep them honest:

* **parse** (every command, fast): the line goes through the real Typer app's click parser,
  group by group, without running the command, so an unknown option, a misspelled
  subcommand, a missing argument or a value of the wrong type fails with the README line.
  Benchmarks, training, `sleep`, `consolidate` and gradient distillation are parse-checked
  only: they take from seconds to hours.
* **run** (the cheap ones, marked slow: it loads the embedded model): the fenced commands
  whose subcommand is in RUN run in README order, in a fresh working folder (so `ad/`,
  `mem/`, `results/` land there) with $REVERIE_MEMORY and $XDG_DATA_HOME pointing inside it,
  and must exit 0. `echo "..." > FILE` lines are replayed by writing the file, because the
  commands after them read it; `reverie report` gets a small results folder to read.

Commands are taken from fenced blocks labelled bash, sh, shell, console or nothing, from
indented code blocks (with `\\` continuations), and from inline code spans in the prose
(parse only). Lines may start with `$ `; trailing `# comments` are dropped. Pipes and
redirections (`|`, `>`), `make` lines and other programs are out of scope; `torchrun ... -m
reverie.cli ARGS` and `python -m reverie.cli ARGS` are checked as `reverie ARGS`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.exceptions import Exit, TyperException
from typer.testing import CliRunner

from reverie.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL_LABELS = {"", "bash", "sh", "shell", "console", "zsh"}
SHELL_OPERATORS = {"|", "||", ">", ">>", "<", "&&", ";", "&", "2>", "2>&1"}
# Inline code that names a command or an option in a sentence rather than showing a command.
PROSE_MENTIONS = {
    "reverie ask --memory",  # "...of `learner.ask` / `reverie ask --memory`": the option, no question
}
# Subcommands cheap enough to run here (a few seconds in all on the embedded model).
RUN = {("world", "sample"), ("inject",), ("ask",), ("read",), ("memories", "list"),
       ("export", "peft"), ("report",), ("--help",)}


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line in README.md
    text: str  # as written (continuations joined)
    argv: tuple[str, ...]  # arguments after `reverie`
    where: str  # fenced | indented | inline

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.where}): {self.text}"


def _argv(text: str) -> tuple[str, ...] | None:
    """The arguments after `reverie`, or None when the line is not a reverie command we check."""
    text = text.strip().removeprefix("$ ").strip()
    try:
        tokens = shlex.split(text, comments=True)  # quotes respected; `# ...` dropped
    except ValueError:
        return None
    if not tokens or any(t in SHELL_OPERATORS for t in tokens) or any("|" in t for t in tokens):
        return None
    if tokens[0] == "reverie":
        return tuple(tokens[1:])
    if "-m" in tokens and "reverie.cli" in tokens:  # torchrun / python -m reverie.cli
        return tuple(tokens[tokens.index("reverie.cli") + 1:])
    return None


def _shell_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join `\\` continuations; keep the first line's number."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, s in lines:
        if pending is not None:
            n, s = pending[0], pending[1] + " " + s.strip()
        if s.rstrip().endswith("\\"):
            pending = (n, s.rstrip()[:-1])
            continue
        pending = None
        out.append((n, s))
    return out


def readme_commands(text: str) -> tuple[list[Command], list[tuple[int, str]]]:
    """Every reverie command in the README, and the fenced lines in order (for the run stage)."""
    lines = text.splitlines()
    found: list[Command] = []
    fenced: list[tuple[int, str]] = []
    prose: list[str] = []  # the text outside fences, for inline spans
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if m:
            fence, label = m.group(1), m.group(2).lower()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                j += 1
            if label in SHELL_LABELS:
                fenced += _shell_lines([(k + 1, lines[k]) for k in range(i + 1, j)])
            prose += [""] * (min(j, len(lines) - 1) + 1 - i)  # keep line numbers
            i = j + 1
            continue
        # An indented code block: four spaces after a blank line, not a list continuation.
        if lines[i].startswith("    ") and i > 0 and not lines[i - 1].strip():
            j = i
            block = []
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                block.append((j + 1, lines[j][4:]))
                j += 1
            for n, s in _shell_lines(block):
                argv = _argv(s)
                if argv is not None:
                    found.append(Command(n, s.strip(), argv, "indented"))
            prose += [""] * (j - i)
            i = j
            continue
        prose.append(lines[i])
        i += 1
    for n, s in fenced:
        argv = _argv(s)
        if argv is not None:
            found.append(Command(n, s.strip(), argv, "fenced"))
    joined = "\n".join(prose)  # same line count as the README: line numbers stay right
    for m in re.finditer(r"`(reverie [^`]+)`", joined):
        span = " ".join(m.group(1).split())  # a span may wrap across lines
        argv = _argv(span)
        if argv is not None and span not in PROSE_MENTIONS:
            found.append(Command(joined.count("\n", 0, m.start()) + 1, span, argv, "inline"))
    return sorted(found, key=lambda c: c.line), fenced


COMMANDS, FENCED = readme_commands(README.read_text(encoding="utf-8"))


def parse(argv: tuple[str, ...]) -> None:
    """Parse ``argv`` as the `reverie` command line would, through every group, without
    invoking anything; raises a TyperException (typer's vendored click errors: UsageError,
    BadParameter, NoSuchOption...) on a bad line."""
    cmd = typer.main.get_command(app)
    try:
        ctx = cmd.make_context("reverie", list(argv))
        while isinstance(cmd, TyperGroup):
            rest = [*ctx._protected_args, *ctx.args]  # what the group left for its subcommand
            if not rest:
                raise TyperException(f"missing command after {ctx.command_path!r}")
            name, sub, args = cmd.resolve_command(ctx, rest)
            assert sub is not None and name is not None  # resolve_command raises otherwise
            ctx = sub.make_context(name, args, parent=ctx)
            cmd = sub
    except Exit as e:  # --help: an eager option that exits 0 after printing
        if e.exit_code != 0:
            raise


def test_readme_has_commands() -> None:
    """The extraction itself works: the README's command block and the recipes are found."""
    where = {c.where for c in COMMANDS}
    assert {"fenced", "indented", "inline"} <= where, where
    assert any(c.argv[:1] == ("ask",) for c in COMMANDS)
    assert any(c.argv[:2] == ("train", "hypernet") for c in COMMANDS if c.where == "indented")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"L{c.line}-{'_'.join(c.argv[:2])}")
def test_readme_command_parses(command: Command) -> None:
    try:
        parse(command.argv)
    except TyperException as e:
        pytest.fail(f"{command}\ndoes not parse: {e.format_message()}", pytrace=False)


def test_parser_catches_bad_lines() -> None:
    """The parse check is not vacuous: each kind of mistake it is for is caught."""
    for bad in (("wrld", "sample"), ("world", "sample", "--n", "two"), ("ask", "q", "--adaptr", "x"),
                ("bench", "sequential", "--T"), ("inject", "bio.txt"), ("memories",)):
        with pytest.raises(TyperException):
            parse(bad)
    parse(("--help",))
    parse(("bench", "qa", "--help"))


def _seed_results(folder: Path) -> None:
    """A benchmark result for `reverie report` to read (no benchmark is run here)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = {"seed": 0, "command": "reverie bench qa --json --seed 0", "acc_inject": 0.5, "acc_full": 1.0}
    (folder / "bench_qa.json").write_text(json.dumps(r))


@pytest.mark.slow
def test_cheap_readme_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fenced commands in RUN run in README order and exit 0 (state flows between them:
    `inject --save ad/` then `ask --adapter ad/`, `read --memory mem/` then `ask --memory mem/`)."""
    monkeypatch.chdir(tmp_path)
    _seed_results(tmp_path / "results")
    env = {"REVERIE_MEMORY": str(tmp_path / "default-memory"), "XDG_DATA_HOME": str(tmp_path / "xdg"),
           "COLUMNS": "200"}
    runner = CliRunner()
    ran = []
    for n, s in FENCED:
        try:
            tokens = shlex.split(s.strip().removeprefix("$ "), comments=True)
        except ValueError:
            continue
        if len(tokens) == 4 and tokens[0] == "echo" and tokens[2] == ">":  # echo "TEXT" > FILE
            Path(tokens[3]).write_text(tokens[1] + "\n", encoding="utf-8")
            continue
        argv = _argv(s)
        if argv is None or not (argv[:1] in RUN or argv[:2] in RUN):
            continue
        if argv[:1] == ("inject",) and "distill" in argv:  # gradient distillation: ~30 s
            continue
        res = runner.invoke(app, list(argv), env=env)
        assert res.exit_code == 0, f"README.md:{n}: {s.strip()}\nexit {res.exit_code}\n{res.output}"
        ran.append(argv[:1] if argv[:1] in RUN else argv[:2])  # the RUN entry it matched
    # The README's walk-through must still hold these; otherwise this test checks little.
    assert {("world", "sample"), ("inject",), ("ask",), ("read",), ("memories", "list"), ("report",)} <= set(ran), ran
