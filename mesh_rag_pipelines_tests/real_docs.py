"""Real text files of this machine (/usr/share/doc: READMEs, changelogs, copyright files),
several named alike but for their extension (`git/README.md`, `git/README.Debian`), copied
into a folder a `files` product reads; made-up files with colliding stems where the machine
has too few."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

DOCS = Path("/usr/share/doc")
MAX_BYTES = 4 * 1024  # MiniLM embeds ~30 texts/s on 2 idle cores


def is_plain_text(path: Path) -> bool:
    """A small UTF-8 file with text, no NUL and no front matter (a real, valid document)."""
    if path.is_symlink() or not path.is_file() or path.name.endswith(".gz"):
        return False
    data = path.read_bytes()
    if len(data) > MAX_BYTES or b"\x00" in data:
        return False
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(content.strip()) and not content.startswith("---\n")


def real_text_files(wanted: int) -> list[Path]:
    """Up to `wanted` files of /usr/share/doc, relative to it: first every file of a folder
    where two names differ only in extension, then the others, in a stable order."""
    found = [
        path.relative_to(DOCS)
        for path in sorted(DOCS.rglob("*"))
        if (path.name.startswith("README") or path.name in ("changelog", "copyright"))
        and is_plain_text(path)
    ]
    stems: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for path in found:
        stems[(path.parent, path.name.split(".", 1)[0])].append(path)
    alike = [path for group in stems.values() if len(group) > 1 for path in group]
    taken = set(alike)
    rest = [path for path in found if path not in taken]
    return sorted((alike + rest)[:wanted])


def copy_real_folder(folder: Path, wanted: int, minimum_real: int) -> list[str]:
    """`folder` filled with `wanted` files; their relative paths (their document ids)."""
    chosen = real_text_files(wanted) if DOCS.is_dir() else []
    if len(chosen) >= minimum_real:
        for relative in chosen:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(DOCS / relative, folder / relative)
        return sorted(path.as_posix() for path in chosen)
    # Too few real files on this machine: colliding stems made up, 5 files per package.
    names = ["README", "README.md", "README.Debian", "changelog", "copyright"]
    written = []
    for number in range(wanted // len(names)):
        package = folder / f"package-{number:03d}"
        package.mkdir(parents=True)
        for name in names:
            (package / name).write_text(
                f"{name} of package {number}.\n\nPackage {number} ships file {name}, with "
                f"notes on building, configuring and reporting problems (edition {number}).\n"
            )
            written.append(f"package-{number:03d}/{name}")
    return sorted(written)
