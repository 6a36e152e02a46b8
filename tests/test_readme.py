"""The README runs as written: every example in it is run here, as a newcomer would run it.

Each fenced block of README.md is one of these, and a block that is none of them fails
`test_every_block_is_run_or_marked`:

* ```` ```python ````: a complete program. It runs with the venv's python (the one running
  this suite) in a fresh subprocess, in its own temporary directory holding a copy of
  ``examples/`` (as at the root of a clone), with a timeout. It must exit 0 and print
  nothing on stderr.
* ```` ```python ```` whose first line is ``# continues the previous example``: it runs
  after the previous Python block, in the same program, as if pasted below it (the reader
  is told so in the text before it).
* ```` ```bash ```` / ```` ```sh ````: commands, one a line (``# ...`` comments ignored),
  run in order by ``bash -e`` in a temporary directory with the venv's ``bin/`` (so
  ``corral``) first on ``PATH``. The documented exceptions are the newcomer commands at the
  top: ``make demo`` runs ``corral demo``, the command its Makefile recipe runs once the
  venv exists (creating the venv and installing from PyPI is not done here), and
  ``make test`` is not run at all, as it would run this suite from inside itself; their
  recipes are checked in the Makefile instead, and `test_readme_opens_with_the_two_commands`
  checks that they open the README.
* ```` ```console ````: a session. A line ``$ COMMAND`` is run like a bash line, in one
  directory for the whole block; the lines after it, up to the next ``$``, are its
  expected stdout. The command must exit 0 with an empty stderr.
* ```` ```toml ```` with ``[[rule]]``: routing rules; they must load with
  `Router.from_toml` and be rules of ``examples/routes.toml``, as the text says. One with
  ``[faults]`` is a load-test profile: it must load with `corral.loadtest.load_profile`.
  Any other ```` ```toml ```` block is a settings file: it must load with
  `corral.load_settings` (every value validated).

Claimed output. In a Python block a comment ``# -> TEXT``, at the end of a line or on a
line of its own, is output the README claims: the claims must match lines of stdout in
their order (other lines may come between). A console block's expected output must match
the command's whole stdout. Everywhere, runs of whitespace compare equal and ``...``
stands for any text (across lines in a console block).

Blocks the test must not run carry the line ``<!-- not run: REASON -->`` right above their
fence; they are counted against `NOT_RUN_ALLOWED` (zero today), so that adding one is a
decision, not an accident.

Environment: variables starting with ``ANTHROPIC_``, ``OPENAI_`` or ``CORRAL_`` are
removed, so a developer's keys and settings never reach the examples. A loopback HTTP
server stands in for Claude: ``ANTHROPIC_API_KEY`` (a dummy) and ``ANTHROPIC_BASE_URL``
point at it, and it answers in the Anthropic Messages format (recorded bodies from
``tests/fixtures/providers``). A block that builds an ``anthropic:`` model must really
have called it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corral import Router

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIXTURES = ROOT / "tests" / "fixtures" / "providers"
BIN = Path(sys.executable).parent  # the venv's bin/ (not resolved: that would leave the venv)

CONTINUES = "# continues the previous example"
NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>.*?) -->$")
NOT_RUN_ALLOWED = 0
"""How many README blocks may go unrun. Raise it only for a block that cannot run (and say
why in its marker); a block showing output belongs in a ``# ->`` claim or a console block."""

SHELL = {"bash", "sh", "shell"}
CLAIM = re.compile(r"#\s*->\s?(?P<text>.*)$")
TIMEOUT_S = 45.0
"""Per example. Each takes one to three seconds; this only bounds a hang."""

MAKE_EXCEPTIONS: dict[str, tuple[str | None, str]] = {
    "make demo": (
        "corral demo",
        "its Makefile recipe, once the venv exists (creating it and installing from PyPI is "
        "not done here)",
    ),
    "make test": (None, "not run: it runs this whole suite, this test included"),
}
"""The README's opening commands: what runs in their place, and why."""


@dataclass
class Block:
    """One fenced block of the README."""

    lang: str
    line: int
    """1-based line number of the opening fence."""
    section: str
    code: str
    not_run: str | None = None
    """The reason given by a not-run marker above the fence."""

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"{self.lang or 'plain'}-L{self.line}-{slug}"


def _blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    section = "top"
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:]
        if line.startswith("```"):
            lang = line[3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            marker = NOT_RUN.match(lines[i - 1]) if i > 0 else None
            blocks.append(
                Block(
                    lang=lang,
                    line=i + 1,
                    section=section,
                    code="\n".join(lines[i + 1 : end]) + "\n",
                    not_run=marker.group("reason").strip() if marker else None,
                )
            )
            i = end
        i += 1
    return blocks


BLOCKS = _blocks(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.not_run is None]
PYTHON = [b for b in RUN if b.lang == "python"]
SHELL_BLOCKS = [b for b in RUN if b.lang in SHELL]
CONSOLE = [b for b in RUN if b.lang == "console"]
TOML = [b for b in RUN if b.lang == "toml" and "[[rule]]" in b.code]
PROFILE_TOML = [b for b in RUN if b.lang == "toml" and "[faults]" in b.code]
SETTINGS_TOML = [
    b for b in RUN if b.lang == "toml" and "[[rule]]" not in b.code and b not in PROFILE_TOML
]


# -- matching output -------------------------------------------------------------------------


def _squash(text: str) -> str:
    """One line with its whitespace runs made single spaces, stripped."""
    return " ".join(text.split())


def _pattern(expected: str, *, multiline: bool) -> re.Pattern[str]:
    pieces = [re.escape(piece) for piece in expected.split("...")]
    return re.compile((".*?" if multiline else ".*").join(pieces), re.S if multiline else 0)


def _claims(code: str) -> list[str]:
    return [m.group("text").strip() for line in code.splitlines() if (m := CLAIM.search(line))]


def _check_claims(claims: list[str], stdout: str) -> None:
    lines = [_squash(line) for line in stdout.splitlines()]
    at = 0
    for claim in claims:
        pattern = _pattern(_squash(claim), multiline=False)
        found = next((k for k in range(at, len(lines)) if pattern.fullmatch(lines[k])), None)
        assert found is not None, (
            f"the README claims the line {claim!r} is printed (after the lines matched so far), "
            f"but stdout from line {at + 1} on was:\n" + "\n".join(stdout.splitlines()[at:])
        )
        at = found + 1


def _check_session_output(command: str, expected: list[str], stdout: str) -> None:
    want = "\n".join(_squash(line) for line in expected).strip()
    got = "\n".join(_squash(line) for line in stdout.splitlines()).strip()
    assert _pattern(want, multiline=True).fullmatch(got), (
        f"`{command}`: the README shows\n{chr(10).join(expected)}\n\nbut it printed\n{stdout}"
    )


# -- the outside world: a loopback server ---------------------------------------------------


@dataclass
class FakeWorld:
    """A loopback HTTP server speaking the Anthropic Messages API."""

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    """Every request body received, in order."""


def _anthropic_bodies() -> tuple[dict[str, Any], dict[str, Any]]:
    """Recorded responses, set to the README's question: fetch the invoice, then answer."""
    tool_use = json.loads((FIXTURES / "anthropic_tool_use.json").read_text())
    tool_use["content"][0]["text"] = "I'll fetch the invoice."
    tool_use["content"][1].update(name="get_invoice", input={"invoice_id": "INV-000101"})
    text = json.loads((FIXTURES / "anthropic_text.json").read_text())
    text["content"][0]["text"] = "INV-000101 totals 1250.00 USD."
    return tool_use, text


@pytest.fixture(scope="module")
def world() -> Iterator[FakeWorld]:
    tool_use, final = _anthropic_bodies()
    fake = FakeWorld(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.path == "/v1/messages":
                fake.messages.append(body)
                answered = any(
                    isinstance(block, dict) and block.get("type") == "tool_result"
                    for message in body.get("messages", [])
                    if isinstance(message.get("content"), list)
                    for block in message["content"]
                )
                self._send(200, final if answered else tool_use)
            else:
                self._send(404, {"error": f"no {self.path} here"})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="readme-fake-world")
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _env(world: FakeWorld) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OPENAI_", "CORRAL_"))
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        ANTHROPIC_API_KEY="sk-ant-readme-example-not-a-key",
        ANTHROPIC_BASE_URL=world.url,
    )
    return env


def _workdir(tmp_path: Path) -> Path:
    """A directory laid out as the root of a clone, as far as the examples look."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )


# -- the shape of the README -----------------------------------------------------------------


def test_every_block_is_run_or_marked() -> None:
    fences = [line for line in README.read_text().splitlines() if line.startswith("```")]
    assert len(fences) == 2 * len(BLOCKS), "an unclosed or nested fence in README.md"
    unknown = [b.id for b in RUN if b.lang not in {"python", "console", "toml", *SHELL}]
    assert not unknown, (
        f"README blocks this test cannot run: {unknown}. Give each a language it runs "
        "(python, bash, console, toml), or the marker <!-- not run: REASON --> above it"
    )
    not_run = [b for b in BLOCKS if b.not_run is not None]
    assert all(b.not_run for b in not_run), "a not-run marker must give its reason"
    assert len(not_run) == NOT_RUN_ALLOWED, [f"{b.id}: {b.not_run}" for b in not_run]
    assert [b for b in TOML if "[[rule]]" not in b.code] == []
    # What runs today: the count moves when the README gains or loses an example.
    assert len(PYTHON) >= 8 and len(CONSOLE) >= 1 and len(SHELL_BLOCKS) >= 1


def test_readme_opens_with_the_two_commands() -> None:
    text = README.read_text()
    first = BLOCKS[0]
    assert first.lang in SHELL and text.index("```") < text.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first.code.splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    demo_recipe = MAKE_EXCEPTIONS["make demo"][0]
    assert re.search(rf"^demo: .*\n\t\$\(BIN\)/{demo_recipe}$", makefile, re.M)
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest", makefile, re.M)


# -- running the examples --------------------------------------------------------------------


def _program(block: Block) -> list[Block]:
    """The blocks that make up the program `block` ends, in order."""
    index = PYTHON.index(block)
    if block.code.startswith(CONTINUES + "\n"):
        assert index > 0, f"{block.id} continues nothing: no Python block comes before it"
        return [*_program(PYTHON[index - 1]), block]
    return [block]


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs_as_written(block: Block, tmp_path: Path, world: FakeWorld) -> None:
    parts = _program(block)
    source = "\n\n".join(part.code for part in parts)
    script = _workdir(tmp_path) / "example.py"
    script.write_text(source)
    calls = len(world.messages)
    proc = _run([sys.executable, str(script)], cwd=tmp_path, env=_env(world))
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stderr}"
    assert proc.stderr == "", f"{block.id} wrote to stderr:\n{proc.stderr}"
    _check_claims([claim for part in parts for claim in _claims(part.code)], proc.stdout)
    if '"anthropic:' in source:
        assert len(world.messages) - calls >= 2, "the example never reached the model server"


def _shell_lines(block: Block) -> list[str]:
    lines = [line.split(" #")[0].strip() for line in block.code.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_shell_example_runs(block: Block, tmp_path: Path, world: FakeWorld) -> None:
    script: list[str] = []
    for line in _shell_lines(block):
        instead, _why = MAKE_EXCEPTIONS.get(line, (line, ""))
        if instead is not None:
            script.append(instead)
    assert script, f"{block.id} has nothing to run"
    proc = _run(["bash", "-e", "-c", "\n".join(script)], cwd=_workdir(tmp_path), env=_env(world))
    assert proc.returncode == 0, f"{block.id}:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr


def _session(block: Block) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"{block.id}: output before the first `$ ` command"
            steps[-1][1].append(line)
    return steps


@pytest.mark.parametrize("block", CONSOLE, ids=[b.id for b in CONSOLE])
def test_console_session_prints_what_it_shows(
    block: Block, tmp_path: Path, world: FakeWorld
) -> None:
    cwd, env = _workdir(tmp_path), _env(world)
    for command, expected in _session(block):
        proc = _run(["bash", "-e", "-c", command], cwd=cwd, env=env)
        assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{proc.stderr}"
        assert proc.stderr == "", f"`{command}` wrote to stderr:\n{proc.stderr}"
        if expected:
            _check_session_output(command, expected, proc.stdout)


@pytest.mark.parametrize("block", TOML, ids=[b.id for b in TOML])
def test_toml_rules_load_and_come_from_the_example_file(block: Block) -> None:
    rules = Router.from_toml(block.code).rules
    demo_rules = Router.from_toml(ROOT / "examples" / "routes.toml").rules
    assert rules and all(rule in demo_rules for rule in rules), "not the demo's rules"


@pytest.mark.parametrize("block", SETTINGS_TOML, ids=[b.id for b in SETTINGS_TOML])
def test_toml_settings_load(block: Block, tmp_path: Path) -> None:
    from corral import load_settings

    path = tmp_path / "corral.toml"
    path.write_text(block.code, encoding="utf-8")
    settings = load_settings(env={}, config_file=path)
    assert settings.model_dump() != load_settings(env={}).model_dump(), "it changes nothing"


@pytest.mark.parametrize("block", PROFILE_TOML, ids=[b.id for b in PROFILE_TOML])
def test_toml_loadtest_profiles_load(block: Block, tmp_path: Path) -> None:
    from corral.loadtest import load_profile

    path = tmp_path / "profile.toml"
    path.write_text(block.code, encoding="utf-8")
    profile = load_profile(str(path))
    assert profile.name and profile.model_dump() != load_profile("production").model_dump()


# -- the conventions themselves --------------------------------------------------------------


def test_claims_match_in_order_with_ellipses() -> None:
    code = 'print(x)  # -> completed It totals 1250. ...\n# -> b\n"not # a claim"\n'
    claims = _claims(code)
    assert claims == ["completed It totals 1250. ...", "b"]
    _check_claims(claims, "noise\ncompleted  It totals 1250. 167\nmore\nb\n")
    with pytest.raises(AssertionError, match="claims the line 'b'"):
        _check_claims(claims, "b\ncompleted It totals 1250. 167\n")
    with pytest.raises(AssertionError):
        _check_claims(["completed It totals 1250."], "completed It totals 1250. 167\n")


def test_session_output_is_matched_whole() -> None:
    _check_session_output("c", ["run_... done", "...", "end"], "run_1  done\nx\ny\nend\n")
    with pytest.raises(AssertionError, match="the README shows"):
        _check_session_output("c", ["run_... done"], "run_1 done\nextra\n")


def test_blocks_are_parsed_with_sections_markers_and_continuations() -> None:
    text = "\n".join(
        [
            "# T",
            "```bash",
            "make demo",
            "```",
            "## Part",
            "<!-- not run: shows a placeholder -->",
            "```text",
            "corral approve GATE_ID",
            "```",
            "```python",
            CONTINUES,
            "```",
        ]
    )
    blocks = _blocks(text)
    assert [(b.lang, b.line, b.section, b.not_run) for b in blocks] == [
        ("bash", 2, "top", None),
        ("text", 7, "Part", "shows a placeholder"),
        ("python", 10, "Part", None),
    ]
    assert blocks[1].code == "corral approve GATE_ID\n"
