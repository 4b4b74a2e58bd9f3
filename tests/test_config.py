"""Tests of the TOML configuration loader and of the `docket serve` flags that override it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from docket.config import Config, ConfigError, Listen, RegistrySettings, load_config
from tests.support.oci import push_blob, random_blob
from tests.support.processes import DocketProcess, free_port

CLI_TIMEOUT = 30.0


def write_config(folder: Path, text: str, name: str = "docket.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# Valid files


def test_config_every_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
listen = "127.0.0.1:5123"
data_dir = "content"
log_level = "WARNING"

[registry]
max_manifest_size = "8MiB"
max_page_size = 50
manifest_cache_size = 1048576
automatic_mount = false
""",
    )

    config = load_config(path)

    assert config.listen == Listen("127.0.0.1", 5123)
    assert config.data_dir == tmp_path.resolve() / "content"
    assert config.log_level == "warning"
    assert config.registry == RegistrySettings(
        max_manifest_size=8 * 1024 * 1024,
        max_page_size=50,
        manifest_cache_size=1048576,
        automatic_mount=False,
    )


def test_config_absolute_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere" / "data"
    path = write_config(tmp_path, f'data_dir = "{data_dir}"\n')
    assert load_config(path).data_dir == data_dir


def test_config_empty_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    assert load_config(path) == Config()


def test_config_no_file() -> None:
    config = load_config(None)
    assert config.listen == Listen("127.0.0.1", 5000)
    assert config.data_dir == Path("docket-data")
    assert config.log_level == "info"
    assert config.registry == RegistrySettings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"512KiB"', 512 * 1024),
        ('"1GiB"', 1 << 30),
        ('"2TiB"', 2 << 40),
        ('"7B"', 7),
        ('"4 MiB"', 4 << 20),
        ('"10"', 10),
        ("0", 0),
        ("123", 123),
    ],
)
def test_config_size_values(tmp_path: Path, value: str, expected: int) -> None:
    path = write_config(tmp_path, f"[registry]\nmax_manifest_size = {value}\n")
    assert load_config(path).registry.max_manifest_size == expected


def test_config_ipv6_listen(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'listen = "[::1]:5001"\n')
    assert load_config(path).listen == Listen("::1", 5001)


# Invalid files: each error message names the key and the problem with its value.


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param('colour = "blue"\n', "colour", "unknown key", id="unknown-top-level"),
        pytest.param("[registry]\nmax_page = 5\n", "registry.max_page", "unknown key", id="unknown-registry-key"),
        pytest.param("[registry.extra]\nx = 1\n", "registry.extra", "unknown key", id="unknown-registry-table"),
        pytest.param("registry = 5\n", "registry", "expected a table", id="registry-not-table"),
        pytest.param("listen = 5000\n", "listen", "expected a string", id="listen-integer"),
        pytest.param('listen = "localhost"\n', "listen", "invalid address", id="listen-no-port"),
        pytest.param('listen = "127.0.0.1:"\n', "listen", "invalid address", id="listen-empty-port"),
        pytest.param('listen = ":5000"\n', "listen", "invalid address", id="listen-no-host"),
        pytest.param('listen = "[]:5000"\n', "listen", "invalid address", id="listen-empty-brackets"),
        pytest.param('listen = "127.0.0.1:65536"\n', "listen", "invalid address", id="listen-port-too-large"),
        pytest.param('listen = "127.0.0.1:-1"\n', "listen", "invalid address", id="listen-negative-port"),
        pytest.param('listen = "127.0.0.1:http"\n', "listen", "invalid address", id="listen-named-port"),
        pytest.param('listen = "127.0.0.1:\u00b2"\n', "listen", "invalid address", id="listen-superscript-port"),
        pytest.param("data_dir = 7\n", "data_dir", "expected a directory path", id="data-dir-integer"),
        pytest.param("log_level = true\n", "log_level", "expected a string", id="log-level-boolean"),
        pytest.param('log_level = "loud"\n', "log_level", "expected one of", id="log-level-unknown"),
        pytest.param('log_level = ""\n', "log_level", "expected one of", id="log-level-empty"),
        pytest.param(
            '[registry]\nmax_page_size = "100"\n',
            "registry.max_page_size",
            "expected a positive integer",
            id="page-size-string",
        ),
        pytest.param(
            "[registry]\nmax_page_size = 0\n",
            "registry.max_page_size",
            "expected a positive integer",
            id="page-size-zero",
        ),
        pytest.param(
            "[registry]\nmax_page_size = true\n",
            "registry.max_page_size",
            "expected a positive integer",
            id="page-size-boolean",
        ),
        pytest.param(
            '[registry]\nautomatic_mount = "yes"\n',
            "registry.automatic_mount",
            "expected true or false",
            id="mount-string",
        ),
        pytest.param(
            "[registry]\nautomatic_mount = 1\n",
            "registry.automatic_mount",
            "expected true or false",
            id="mount-integer",
        ),
        pytest.param(
            "[registry]\nmax_manifest_size = 1.5\n", "registry.max_manifest_size", "invalid size", id="size-float"
        ),
        pytest.param(
            "[registry]\nmax_manifest_size = true\n", "registry.max_manifest_size", "invalid size", id="size-boolean"
        ),
        pytest.param(
            "[registry]\nmax_manifest_size = -1\n", "registry.max_manifest_size", "invalid size", id="size-negative"
        ),
        pytest.param(
            '[registry]\nmax_manifest_size = "4MB"\n',
            "registry.max_manifest_size",
            "invalid size",
            id="size-decimal-unit",
        ),
        pytest.param(
            '[registry]\nmanifest_cache_size = "lots"\n',
            "registry.manifest_cache_size",
            "invalid size",
            id="size-word",
        ),
        pytest.param(
            '[registry]\nmanifest_cache_size = "-4MiB"\n',
            "registry.manifest_cache_size",
            "invalid size",
            id="size-negative-string",
        ),
        pytest.param(
            f'[registry]\nmanifest_cache_size = "{"9" * 5000}"\n',
            "registry.manifest_cache_size",
            "invalid size",
            id="size-5000-digits",
        ),
    ],
)
def test_config_invalid(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write_config(tmp_path, text)
    message = config_error(path)
    assert f"{key}:" in message
    assert problem in message
    assert str(path) in message


def test_config_invalid_toml(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'listen = "127.0.0.1:5000"\nlog_level = \n')
    message = config_error(path)
    assert str(path) in message
    assert "invalid TOML" in message
    assert "line 2" in message


def test_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = config_error(path)
    assert str(path) in message
    assert "No such file or directory" in message


def test_config_directory_path(tmp_path: Path) -> None:
    message = config_error(tmp_path)
    assert str(tmp_path) in message


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('# r\u00e9sum\u00e9\nlog_level = "info"\n'.encode("latin-1"))
    message = config_error(path)
    assert str(path) in message


# The command line


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", "serve", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def test_cli_invalid_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'listen = "127.0.0.1:0"\n[registry]\nmax_page_size = 0\n')
    result = run_serve("--config", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert "registry.max_page_size" in result.stderr
    assert "expected a positive integer" in result.stderr
    assert not (tmp_path / "data").exists()


def test_cli_unknown_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'listen = "127.0.0.1:0"\nlisten_address = "127.0.0.1:0"\n')
    result = run_serve("--config", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert "listen_address" in result.stderr
    assert "unknown key" in result.stderr


def test_cli_missing_config(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = run_serve("--config", str(path), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert str(path) in result.stderr


def test_cli_invalid_listen_flag(tmp_path: Path) -> None:
    result = run_serve("--listen", "127.0.0.1", "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert "--listen" in result.stderr
    assert "invalid address" in result.stderr


def test_cli_listen_flag_overrides_file(tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> None:
    file_port = free_port()
    path = write_config(tmp_path, f'listen = "127.0.0.1:{file_port}"\n')

    server = start_docket("--config", str(path))

    assert server.port != file_port
    assert httpx.get(f"{server.url}/v2/", timeout=10.0).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{file_port}/v2/", timeout=2.0)


def test_cli_data_dir_flag_overrides_file(tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> None:
    path = write_config(tmp_path, 'listen = "127.0.0.1:0"\ndata_dir = "from-file"\n')
    flag_dir = tmp_path / "from-flag"

    server = start_docket("--config", str(path), data_dir=flag_dir)
    blob = random_blob(256)
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        push_blob(client, "config/data-dir", blob)

    encoded = blob.digest.removeprefix("sha256:")
    assert (flag_dir / "metadata.db").is_file()
    assert (flag_dir / "blobs" / "sha256" / encoded[:2] / encoded).is_file()
    assert not (tmp_path / "from-file").exists()
