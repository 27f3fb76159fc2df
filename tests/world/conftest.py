"""A local package index for the fetch tests of the real text (passages, Wikipedia)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from reverie.world import passages as P


def tar_gz(path: Path, members: dict[str, bytes]) -> None:
    """A gzipped tar archive at ``path`` holding ``members`` (name: contents)."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


@pytest.fixture()
def serve(tmp_path, monkeypatch) -> Callable[[str, str, Callable[[Path], None]], str]:
    """``serve(project, archive, write)``: a file:// simple index whose ``project`` page
    lists ``archive``, written by ``write(path)``; returns its sha256. The cache is
    ``tmp_path/cache``."""
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "simple").as_uri())
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "cache"))
    orig = P.urllib.request.urlopen
    # A file:// folder URL lists the folder; a registry serves index.html there.
    monkeypatch.setattr(P.urllib.request, "urlopen",
                        lambda url, timeout=None: orig(url + ("index.html" if url.endswith("/") else ""), timeout=timeout))

    def put(project: str, archive: str, write: Callable[[Path], None]) -> str:
        folder = tmp_path / "simple" / project
        folder.mkdir(parents=True)
        write(folder / archive)
        sha = hashlib.sha256((folder / archive).read_bytes()).hexdigest()
        (folder / "index.html").write_text(f'<a href="{archive}#sha256={sha}">{archive}</a>')
        return sha

    return put
