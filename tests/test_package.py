"""What `azd deploy` ships: only the app, and the app imports and registers its functions from that alone.

infra/package.py builds the zip as azd does (the service directory minus `.funcignore`, matched as
azd's gitignore library matches); `make package` writes it to .run/package.zip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from responders.replay import _functions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "infra"))
import package  # noqa: E402  (infra/package.py, not an installed module)

APP_FILES = {"function_app.py", "host.json", "requirements.txt", "policy.yaml"}
# What must never reach Azure: the simulated tenant, stand-ins, tests and every development file.
NEVER = (
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".venv",
    "node_modules",
    "rehearsal",
    "tests",
    "bench",
    "samples",
    "infra",
    ".ci",
    ".run",
    "package.json",
    "package-lock.json",
    "requirements-dev.txt",
    "pyproject.toml",
    "Makefile",
    "azure.yaml",
    "local.settings.json",
    "local.settings.example.json",
    ".funcignore",
    ".gitignore",
)


def expected_files() -> set[str]:
    code = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "responders").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    return APP_FILES | code


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "package.zip"
    package.build(ROOT, out)
    return out


def test_package_holds_only_what_runs(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert len(names) == len(set(names))
    assert set(names) == expected_files()
    assert not [i.filename for i in infos if i.is_dir()], "azd writes file entries only"
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    for name in names:
        parts = name.split("/")
        assert not set(parts) & set(NEVER), name
        assert not name.endswith((".md", ".pyc")), name
        assert not parts[-1].startswith(".venv"), name


def test_git_reads_funcignore_as_azd_does() -> None:
    """The allow-list means the same under git's own rules, so neither reading can surprise."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    ignored = subprocess.run(
        ["git", "ls-files", "-c", "-i", "--exclude-from=.funcignore"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    shipped = {name for name, _ in package.package_files(ROOT)}
    assert set(tracked) - set(ignored) == shipped & set(tracked)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_matcher_follows_azd(tmp_path: Path) -> None:
    # azd's own functional case (Azure/azure-dev cli/azd/test/functional,
    # Test_CLI_Package_ZipDeploy_Exclusions, "PythonApp_FuncIgnore"): these three patterns keep
    # __pycache__ (no default exclusions once the file exists); local.settings.json goes at any depth.
    root = _tree(
        tmp_path / "funcapp",
        {
            ".funcignore": ".venv/\ntest.log\ntests/**",
            "requirements.txt": "",
            "host.json": "{}",
            "local.settings.json": "{}",
            "other/other/local.settings.json": "{}",
            ".venv/pyvenv.cfg": "",
            "__pycache__/file": "",
            "log/test.log": "",
            "tests/some.py": "",
        },
    )
    names = [n for n, _ in package.package_files(root)]
    assert names == ["__pycache__/file", "host.json", "requirements.txt"]

    root = _tree(
        tmp_path / "quirks",
        {
            ".funcignore": (
                "\ufeff# comment\n/*\n!/keep/**\n!/keep/\n!/lib/deep/x.py\ndocs/*.txt\n/keep/a.md\n"
            ),
            "keep/docs/n.txt": "",
            "keep/docs/sub/n.txt": "",
            "keep/a.md": "",
            "keep/b/a.md": "",
            "keep/.azure/config.json": "",
            "lib/deep/x.py": "",
            "top.py": "",
        },
    )
    (root / "keep" / "link.py").symlink_to(root / "top.py")
    names = [n for n, _ in package.package_files(root)]
    # `docs/*.txt` matches the last components at any depth, its `*` stopping at `/`; a negation
    # cannot reach below an excluded directory (lib/); a file symlink ships its target's content.
    assert names == ["keep/b/a.md", "keep/docs/sub/n.txt", "keep/link.py"]
    # where go-gitignore and git differ: an anchored name is fnmatch'ed against the whole path
    # (`*` crossing `/`), and `a/b` is not anchored to the top
    assert package.excluded(package.parse("/*.md"), "keep/b/c.md", False)
    assert package.excluded(package.parse("docs/*.txt"), "x/y/docs/n.txt", False)
    assert not package.excluded(package.parse("docs/"), "docs", False)

    for bad in ("a b", "foo\\ bar", "x # note", "a/!b", "**.pyc", "a//b", "/"):
        with pytest.raises(package.IgnoreSyntaxError):
            package.parse(bad)


def test_refuses_a_directory_symlink_it_would_ship(tmp_path: Path) -> None:
    root = _tree(tmp_path / "app", {".funcignore": "*.pyc\n", "lib/x.py": ""})
    (root / "linked").symlink_to(root / "lib")
    with pytest.raises(SystemExit, match="symlink to a directory"):
        package.package_files(root)


def _requirement_closure() -> set[str]:
    """requirements.txt and what each of those needs (markers evaluated here, no extras)."""
    wanted = [
        Requirement(line.split("#")[0].strip())
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    seen: set[str] = set()
    while wanted:
        req = wanted.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        for dep in metadata.distribution(req.name).requires or []:
            wanted.append(Requirement(dep))
    return seen


def _link_site_packages(target: Path, dists: set[str]) -> None:
    """Make only the files of `dists` importable in `target`, linking whole directories when
    every file below them belongs to those distributions."""
    owners: dict[str, set[str]] = {}
    source = None
    for dist in metadata.distributions():
        key = dist.metadata["Name"].lower().replace("_", "-")
        for file in dist.files or []:
            parts = Path(file).parts
            if not parts or parts[0] == ".." or parts[0].endswith(".pth"):
                continue
            for depth in range(1, len(parts) + 1):
                owners.setdefault("/".join(parts[:depth]), set()).add(key)
            if key in dists and source is None:
                source = Path(str(dist.locate_file(""))).resolve()
    assert source is not None

    def place(rel: str) -> None:
        if owners[rel] <= dists:
            link = target / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source / rel)
        elif owners[rel] & dists and (source / rel).is_dir():
            below = rel + "/"
            for child in sorted(k for k in owners if k.startswith(below) and "/" not in k[len(below) :]):
                place(child)

    for top in sorted(k for k in owners if "/" not in k):
        place(top)


def test_package_imports_and_registers_every_function_in_a_clean_venv(built: Path, tmp_path: Path) -> None:
    """Unpacked alone, with only requirements.txt (and its dependencies) installed, the app loads.

    The environment is a new venv whose site-packages links just those distributions from the
    development venv (no network here); `-I` keeps the repository and PYTHON* variables off
    sys.path, so every project module must come from the unpacked zip.
    """
    app_dir = tmp_path / "wwwroot"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(app_dir)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    _link_site_packages(site, _requirement_closure())
    probe = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(app_dir)!r})\n"
        "import function_app\n"
        "names = [f.get_function_name() for f in function_app.app.get_functions()]\n"
        "files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)})\n"
        "absent = [m for m in ('rehearsal', 'tests', 'pytest', 'trustme', 'hypothesis')\n"
        "          if importlib.util.find_spec(m) is None]\n"
        "print(json.dumps({'names': names, 'files': files, 'absent': absent}))\n"
    )
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [python, "-I", "-c", probe], cwd=app_dir, env=clean_env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(report["names"]) == sorted(_functions())
    assert report["absent"] == ["rehearsal", "tests", "pytest", "trustme", "hypothesis"]
    ours = [f for f in report["files"] if f.startswith(str(app_dir))]
    assert any(f.endswith("responders/triggers/eventgrid.py") for f in ours)
    assert not [f for f in report["files"] if f.startswith(str(ROOT))], "imported from the repository"


def test_pip_install_dot_builds_the_product_package_alone(tmp_path: Path) -> None:
    """`azd restore` runs `pip install .`: setuptools must find one package, not refuse the flat layout.

    This venv's setuptools (65) has no bdist_wheel without the `wheel` package, and pip's isolated
    build would need the network, so the check builds the sdist, which runs the same package
    discovery and metadata (pyproject asks for setuptools>=70.1, whose bdist_wheel is built in).
    """
    src = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    out = tmp_path / "dist"
    out.mkdir()
    build = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", build],
        cwd=src,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import tarfile

    with tarfile.open(out / done.stdout.strip().splitlines()[-1]) as sdist:
        names = sdist.getnames()

        def member(suffix: str) -> list[str]:
            [name] = [n for n in names if n.endswith(suffix)]
            extracted = sdist.extractfile(name)
            assert extracted is not None
            return extracted.read().decode().split()

        assert member(".egg-info/top_level.txt") == ["responders"]
        pinned = [
            line.strip()
            for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert member(".egg-info/requires.txt") == pinned
    packaged = {n.split("/", 2)[1] for n in names if n.count("/") >= 2}
    assert packaged == {"responders", "synthetic_leak_responder.egg-info"}, packaged
