#!/usr/bin/env python3
"""Bootstrap for a fresh clone: ``python3 dev.py run``, ``test [pytest args]`` or ``docs``.

Only the standard library is used, so this works before anything is
installed. It creates ``.venv`` next to this file if needed, installs
``requirements-dev.lock`` (every transitive dependency pinned with its hashes)
into it when the lock changed since the last
install (a sha256 of the lock files is kept in ``.venv``), then replaces
itself with ``.venv/bin/python -m devtools.launcher ...``, which does the work.

Deliberately free of syntax newer than Python 3.6 (annotations are strings,
no ``from __future__``) so that an old interpreter reaches the version check
and prints a useful message instead of a SyntaxError.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".requirements.sha256"
# The lock, not requirements-dev.txt: a fresh clone installs exactly what CI tested.
REQUIREMENTS = ROOT / "requirements-dev.lock"
COMMANDS = ("run", "test", "docs")


def fail(message: "str", code: "int" = 1) -> "None":
    """Exit with a message on stderr; the bootstrap has no other error channel."""
    sys.stderr.write("dev.py: " + message.rstrip() + "\n")
    sys.exit(code)


def venv_python() -> "Path":
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def requirements_digest() -> "str":
    """sha256 over every requirements*.lock (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("requirements*.lock")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def venv_is_usable(python: "Path") -> "bool":
    """Whether the venv's interpreter runs and is new enough.

    A venv outlives the Python that made it: after an upgrade or removal of
    that Python its interpreter may not start at all.
    """
    if not python.exists():
        return False
    check = "import sys; sys.exit(0 if sys.version_info >= {!r} else 1)".format(MIN_PYTHON)
    try:
        result = subprocess.run(
            [str(python), "-c", check], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        return result.returncode == 0
    except OSError:
        return False


def ensure_venv() -> "Path":
    python = venv_python()
    if venv_is_usable(python):
        return python
    action = "Recreating the broken" if VENV.exists() else "Creating a"
    print("dev.py: {} virtualenv in {} ...".format(action, VENV), flush=True)
    result = subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=False)
    if result.returncode != 0 or not python.exists():
        fail(
            "could not create the virtualenv in {}. On Debian/Ubuntu install the venv "
            "module first: sudo apt-get install python3-venv".format(VENV)
        )
    if STAMP.exists():
        STAMP.unlink()
    return python


def ensure_requirements(python: "Path") -> "None":
    digest = requirements_digest()
    try:
        if STAMP.read_text().strip() == digest:
            return
    except OSError:
        pass
    print("dev.py: installing {} into .venv (requirements changed) ...".format(REQUIREMENTS.name), flush=True)
    cmd = [
        str(python), "-m", "pip", "install", "--disable-pip-version-check",
        "--require-hashes", "--no-deps", "-r", str(REQUIREMENTS),
    ]
    result = subprocess.run(cmd, cwd=str(ROOT), check=False)
    if result.returncode != 0:
        fail("pip install failed (exit code {}); see the output above.".format(result.returncode), result.returncode)
    # Written only after a successful install, so a failed one is retried next time.
    STAMP.write_text(digest + "\n")


def main(argv: "list[str]") -> "None":
    if sys.version_info < MIN_PYTHON:
        fail(
            "Python {}.{} or newer is needed, this is {}. Run dev.py with a newer "
            "interpreter, e.g. python3.11 dev.py ...".format(MIN_PYTHON[0], MIN_PYTHON[1], sys.version.split()[0])
        )
    if not argv or argv[0] not in COMMANDS:
        fail(
            "usage: python3 dev.py run\n       python3 dev.py test [pytest arguments]\n       python3 dev.py docs",
            0 if argv[:1] in (["-h"], ["--help"]) else 2,
        )
    python = ensure_venv()
    ensure_requirements(python)
    # Paths given to pytest are relative to the repository root, like everything else.
    os.chdir(str(ROOT))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(str(python), [str(python), "-m", "devtools.launcher", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
