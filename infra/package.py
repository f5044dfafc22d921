"""Build the Function app package the way `azd deploy` builds it, into .run/package.zip.

azd (Azure/azure-dev, cli/azd/pkg/project/project_utils.go `createDeployableZip` and
cli/azd/pkg/rzip/rzip.go) zips the service directory as it is: once `.funcignore` exists, only its
patterns decide (no default exclusions), plus three fixed ones: a `.azure` directory, the
`.funcignore` file itself and any `local.settings.json`. It walks directories in name order, never
descends into an excluded directory (so a negation cannot bring back a file below one), follows
symlinks, and writes file entries only. Patterns are matched by github.com/denormal/go-gitignore,
which differs from git in two ways that matter here, both reproduced below:
  - an anchored pattern without another slash (`/*`, `/tests`) is matched against the whole
    relative path with fnmatch flags 0, so `*` also matches `/` (`/*` matches every path);
  - a pattern with an inner slash and no leading one (`a/b`) matches the last components of a
    path at any depth, not only from the top.
This matcher accepts only the syntax whose meaning is unambiguous in both (no escapes, no inner
whitespace, `**` only as a whole path component) and refuses the rest, so `.funcignore` cannot
mean one thing here and another to azd.

Usage: python infra/package.py [--root DIR] [--out FILE] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".funcignore"
ROOT = Path(__file__).resolve().parent.parent


class IgnoreSyntaxError(ValueError):
    """A `.funcignore` line this matcher cannot vouch for; the message names the line."""


def _fnmatch_regex(pattern: str, pathname: bool) -> re.Pattern[str]:
    """fnmatch(3) without escapes: with FNM_PATHNAME, `*`, `?` and `[...]` never match `/`."""
    any_char = "[^/]" if pathname else "."
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(any_char + "*")
        elif ch == "?":
            out.append(any_char)
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                cls = "".join("\\" + c if c in "\\^]" else c for c in body)
                out.append(f"[{'^' if negate else ''}{'/' if negate and pathname else ''}{cls}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class Pattern:
    """One `.funcignore` line, classified as go-gitignore classifies it (name, path or wildcard)."""

    text: str
    negated: bool
    anchored: bool
    directory: bool
    parts: tuple[str, ...]

    @property
    def kind(self) -> str:
        if "**" in self.parts:
            return "wildcard"
        return "path" if len(self.parts) > 1 else "name"

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.directory and not is_dir:
            return False
        if self.kind == "name":
            subject = rel if self.anchored else rel.rsplit("/", 1)[-1]
            return bool(_fnmatch_regex(self.parts[0], pathname=False).match(subject))
        if self.kind == "path":
            components = rel.split("/")
            if not self.anchored:
                if len(components) < len(self.parts):
                    return False
                components = components[-len(self.parts) :]
            return bool(_fnmatch_regex("/".join(self.parts), pathname=True).match("/".join(components)))
        tokens = list(self.parts)
        if not self.anchored and tokens[0] != "**":
            tokens.insert(0, "**")
        return _wildcard(rel.split("/"), tokens)


def _wildcard(path: list[str], tokens: list[str]) -> bool:
    if not tokens:
        return not path
    if tokens[0] == "**":
        return _wildcard(path, tokens[1:]) or (bool(path) and _wildcard(path[1:], tokens))
    return bool(path) and bool(_fnmatch_regex(tokens[0], pathname=True).match(path[0])) and _wildcard(
        path[1:], tokens[1:]
    )


def parse(text: str) -> list[Pattern]:
    """The patterns of an ignore file, in order; a line outside the supported syntax is an error."""
    patterns: list[Pattern] = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{IGNORE_FILE} line {number} ({line!r})"
        if re.search(r"\s", line) or "\\" in line or "#" in line:
            raise IgnoreSyntaxError(f"{where}: whitespace, escapes and inline comments are not supported")
        negated = line.startswith("!")
        body = line[1:] if negated else line
        if "!" in body:
            raise IgnoreSyntaxError(f"{where}: `!` is supported only at the start of a line")
        anchored = body.startswith("/")
        body = body[1:] if anchored else body
        directory = body.endswith("/")
        body = body[:-1] if directory else body
        parts = tuple(body.split("/"))
        if not body or "" in parts:
            raise IgnoreSyntaxError(f"{where}: empty path component")
        if any("**" in part and part != "**" for part in parts):
            raise IgnoreSyntaxError(f"{where}: `**` is supported only as a whole path component")
        patterns.append(Pattern(line, negated, anchored, directory, parts))
    return patterns


def excluded(patterns: list[Pattern], rel: str, is_dir: bool) -> bool:
    """azd's rule for one entry: fixed exclusions first, then the last matching pattern decides."""
    name = rel.rsplit("/", 1)[-1]
    if (is_dir and name == ".azure") or (not is_dir and name in (IGNORE_FILE, "local.settings.json")):
        return True
    for pattern in reversed(patterns):
        if pattern.matches(rel, is_dir):
            return not pattern.negated
    return False


def package_files(root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file on disk) for every file azd would ship, in azd's walk order."""
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        raise SystemExit(f"{ignore} is missing: without it azd ships the whole directory")
    patterns = parse(ignore.read_text(encoding="utf-8"))
    files: list[tuple[str, Path]] = []

    def walk(directory: Path, prefix: str) -> None:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            rel = prefix + name
            is_dir = path.is_dir()  # follows symlinks, as azd does
            if excluded(patterns, rel, is_dir):
                continue
            if is_dir and path.is_symlink():
                # azd matches what is below a followed directory link by the link target's path
                raise SystemExit(f"{rel} is a symlink to a directory: exclude it or replace it with a copy")
            if is_dir:
                walk(path, rel + "/")
            else:
                files.append((rel, path.resolve()))

    walk(root, "")
    return files


def build(root: Path, out: Path) -> list[str]:
    """Write the zip (deflated file entries, no directory entries) and return its names."""
    files = package_files(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            archive.write(path, name)
    tmp.replace(out)
    return [name for name, _ in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the service directory (azure.yaml: project)")
    parser.add_argument("--out", type=Path, default=ROOT / ".run" / "package.zip")
    parser.add_argument("--list", action="store_true", help="print the file names instead of building")
    args = parser.parse_args(argv)
    try:
        names = (
            [name for name, _ in package_files(args.root)] if args.list else build(args.root, args.out)
        )
    except IgnoreSyntaxError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(names))
    else:
        print(f"package: {args.out} ({len(names)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
