"""A wrong corpus is refused with its path and the fetch command; fetch replaces it atomically.

Every test works on a copy of the real corpus in ``tmp_path``; the real cache is only read, and
nothing is downloaded (``fetch`` gets the verified bytes from a stand-in for the download).
"""

from __future__ import annotations

import bz2
import csv
import errno
import io
import os
import subprocess
import sys

import pytest

from mtl_tutorial import data
from mtl_tutorial.data import (
    CORPUS_FILE,
    FETCH_COMMAND,
    MEMBER_SHA256,
    MEMBER_SIZE,
    CorruptDataError,
    data_dir,
    fetch,
    load_raw,
    load_splits,
    main,
)
from mtl_tutorial.files import CorruptFileError


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return (data_dir() / CORPUS_FILE).read_bytes()


@pytest.fixture
def corpus(tmp_path, real_bytes, monkeypatch):
    """A private copy of the real corpus, and an empty verification cache."""
    monkeypatch.setattr(data, "_VERIFIED", set())
    path = tmp_path / CORPUS_FILE
    path.write_bytes(real_bytes)
    return path


@pytest.fixture
def offline_download(monkeypatch, real_bytes):
    """``fetch`` without the network: the download returns the verified corpus; count calls."""
    calls = []

    def download() -> bytes:
        calls.append(1)
        return real_bytes

    monkeypatch.setattr(data, "_download_member", download)
    return calls


def swap_fresh_and_rotten(compressed: bytes) -> bytes:
    """The same corpus with the labels fresh and rotten swapped: still a valid bz2 CSV."""
    rows = list(csv.DictReader(io.StringIO(bz2.decompress(compressed).decode("utf-8"))))
    swap = {"fresh": "rotten", "rotten": "fresh"}
    for row in rows:
        row["category"] = swap.get(row["category"], row["category"])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return bz2.compress(out.getvalue().encode("utf-8"))


def assert_names_path_and_fix(error: BaseException, path) -> None:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    assert FETCH_COMMAND in message


def test_the_real_corpus_loads(corpus):
    assert len(load_raw(corpus.parent)) == 13_905


def test_swapped_labels_are_refused(corpus, real_bytes):
    swapped = swap_fresh_and_rotten(real_bytes)
    rows = list(csv.DictReader(io.StringIO(bz2.decompress(swapped).decode("utf-8"))))
    assert sum(r["category"] == "fresh" for r in rows) == 5405  # readable, and really swapped
    corpus.write_bytes(swapped)
    with pytest.raises(CorruptDataError, match="altered") as info:
        load_splits(directory=corpus.parent)
    assert_names_path_and_fix(info.value, corpus)


def test_truncated_corpus_is_refused_not_a_bare_bz2_error(corpus, real_bytes):
    corpus.write_bytes(real_bytes[: len(real_bytes) // 2])
    with pytest.raises(CorruptDataError, match=f"truncated or altered .* bytes where the pinned corpus has {MEMBER_SIZE:,}") as info:
        load_raw(corpus.parent)
    assert_names_path_and_fix(info.value, corpus)
    assert isinstance(info.value, (ValueError, CorruptFileError))
    error = info.value
    assert not isinstance(error, (OSError, EOFError))  # what bz2 raises on a cut stream
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_unreadable_corpus_is_refused(corpus):
    corpus.unlink()
    corpus.mkdir()  # reading a folder fails even as root, where chmod 000 would not
    with pytest.raises(CorruptDataError, match="cannot read") as info:
        load_raw(corpus.parent)
    assert_names_path_and_fix(info.value, corpus)


def test_corpus_is_picked_up_through_the_environment(corpus, real_bytes, monkeypatch):
    monkeypatch.setenv("MTL_TUTORIAL_DATA", str(corpus.parent))
    corpus.write_bytes(real_bytes[:1000])
    with pytest.raises(CorruptDataError) as info:
        load_splits()
    assert_names_path_and_fix(info.value, corpus)


@pytest.fixture
def count_hashes(monkeypatch):
    calls = []
    real = data._sha256

    def counting(blob: bytes) -> str:
        calls.append(len(blob))
        return real(blob)

    monkeypatch.setattr(data, "_sha256", counting)
    return calls


def test_checksum_is_cached_for_the_same_file(corpus, count_hashes):
    load_raw(corpus.parent)
    load_raw(corpus.parent)
    load_splits(directory=corpus.parent)
    assert len(count_hashes) == 1


def test_checksum_cache_is_invalidated_by_a_new_mtime(corpus, count_hashes):
    load_raw(corpus.parent)
    stat = corpus.stat()
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    load_raw(corpus.parent)
    assert len(count_hashes) == 2


def test_checksum_cache_is_invalidated_by_a_new_size(corpus, real_bytes, count_hashes):
    load_raw(corpus.parent)
    stat = corpus.stat()
    with open(corpus, "r+b") as f:  # the same inode, cut short, with its old mtime put back
        f.truncate(len(real_bytes) - 100)
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CorruptDataError, match="truncated"):
        load_raw(corpus.parent)
    assert len(count_hashes) == 2


def test_change_that_keeps_size_and_mtime_is_still_not_a_bare_bz2_error(corpus, real_bytes):
    """The cache's blind spot (same inode, size and mtime) still ends in the fetch command."""
    load_raw(corpus.parent)
    stat = corpus.stat()
    with open(corpus, "r+b") as f:
        f.seek(len(real_bytes) // 2)
        f.write(bytes(1000))
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CorruptDataError) as info:
        load_raw(corpus.parent)
    assert_names_path_and_fix(info.value, corpus)


def test_fetch_keeps_a_good_corpus(corpus, offline_download):
    assert fetch(corpus.parent, quiet=True) == corpus
    assert offline_download == []


@pytest.mark.parametrize("fault", ["truncated", "swapped", "same size and mtime"])
def test_fetch_replaces_a_bad_corpus(corpus, real_bytes, offline_download, fault):
    if fault == "truncated":
        corpus.write_bytes(real_bytes[:5000])
    elif fault == "swapped":
        corpus.write_bytes(swap_fresh_and_rotten(real_bytes))
    else:  # the load-time cache says "ok" for this size and mtime: fetch must not trust it
        load_raw(corpus.parent)
        stat = corpus.stat()
        with open(corpus, "r+b") as f:
            f.seek(1000)
            f.write(bytes(100))
        os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fetch(corpus.parent, quiet=True)
    assert offline_download == [1]
    assert data._sha256(corpus.read_bytes()) == MEMBER_SHA256
    assert len(load_raw(corpus.parent)) == 13_905


def test_fetch_into_an_empty_folder(tmp_path, offline_download):
    path = fetch(tmp_path / "new", quiet=True)
    assert path.read_bytes() and data._sha256(path.read_bytes()) == MEMBER_SHA256
    assert sorted(os.listdir(tmp_path / "new")) == [CORPUS_FILE]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_fetch_that_fails_half_way_keeps_the_old_file(
    corpus, real_bytes, offline_download, monkeypatch, failing
):
    """A full disk while writing (fsync) or at the rename: the old file stays, no temp file."""
    old = real_bytes[:5000]
    corpus.write_bytes(old)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(OSError, match="No space left"):
        fetch(corpus.parent, quiet=True)
    monkeypatch.undo()
    assert corpus.read_bytes() == old
    assert os.listdir(corpus.parent) == [CORPUS_FILE]


# The command line.


def test_cli_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "fetch" in out and "info" in out


@pytest.mark.parametrize("argv", [["download"], [], ["info", "extra"]])
def test_cli_usage_error_is_one_line_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "error" in err and "Traceback" not in err
    if argv != ["info", "extra"]:
        assert "fetch" in err and "info" in err


@pytest.mark.parametrize("fault", ["missing", "truncated"])
def test_cli_info_on_a_bad_corpus_is_one_line_exit_2(
    corpus, real_bytes, monkeypatch, capsys, fault
):
    monkeypatch.setenv("MTL_TUTORIAL_DATA", str(corpus.parent))
    if fault == "missing":
        corpus.unlink()
    else:
        corpus.write_bytes(real_bytes[:1000])
    assert main(["info"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert FETCH_COMMAND in captured.err and str(corpus) in captured.err


def test_cli_as_a_process(corpus, real_bytes):
    """Exit codes as the shell sees them: --help 0, bad command 2, bad corpus 2; no traceback."""
    corpus.write_bytes(real_bytes[:1000])
    env = {**os.environ, "MTL_TUTORIAL_DATA": str(corpus.parent)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mtl_tutorial.data", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert run("--help").returncode == 0
    for args in (["download"], ["info"]):
        result = run(*args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
