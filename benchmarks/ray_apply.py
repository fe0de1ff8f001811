"""A folder of gray PNGs through the local ``kernelnet apply`` and through ``kernelnet apply --engine ray`` on a
two-process Ray cluster on loopback (``ray start`` head + one worker node, one CPU each: the same cores), whole
process wall time, and the two output folders compared byte for byte.

Each round: the cluster is stopped and the local apply runs alone (its idle processes would slow it); then the
cluster is started (not timed) and the Ray apply connects to it (timed: connect, plan, actors, work). Every round
writes new folders. p50 seconds, files/s and ratio = local p50 / Ray p50 (> 0.7: the bar).

    python benchmarks/ray_apply.py [--files 20000] [--size 256] [--rounds 3] [--folder PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from folder_apply import console_script, make_folder, make_model  # noqa: E402


def _ray_cli() -> str:
    found = shutil.which("ray", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        sys.exit("the ray command is not installed: pip install 'kernelnet[ray]'")
    return found


def start_cluster(env: dict[str, str]) -> str:
    """A head and a worker node, one CPU each, on 127.0.0.1; returns the address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    for args in (["--head", f"--port={port}", "--include-dashboard=false"], [f"--address={address}"]):
        subprocess.run([_ray_cli(), "start", *args, *common], env=env, check=True, capture_output=True)
    return address


def stop_cluster(env: dict[str, str]) -> None:
    subprocess.run([_ray_cli(), "stop", "--force"], env=env, capture_output=True)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def same_bytes(a: Path, b: Path) -> str:
    names = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    other = sorted(p.relative_to(b) for p in b.rglob("*.png"))
    if names != other:
        return f"different file sets ({len(names)} / {len(other)} files)"
    unequal = sum((a / n).read_bytes() != (b / n).read_bytes() for n in names)
    return f"{len(names)} files, {unequal} differ" if unequal else f"{len(names)} files, byte-identical"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None,
                        help="reuse (or make once) the input folder here: making 20,000 PNGs takes ~2 minutes")
    args = parser.parse_args()
    kernelnet = console_script()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs = args.folder or root / "in"
        if not inputs.exists():
            make_folder(inputs, args.files, args.size)
        files = len(list(inputs.rglob("*.png")))
        make_model(root / "sobel.onnx")
        env["KERNELNET_CACHE_DIR"] = str(root / "cache")
        times: dict[str, list[float]] = {"local apply": [], "ray apply": []}
        stop_cluster(env)
        try:
            for round_ in range(args.rounds):
                times["local apply"].append(timed([kernelnet, "apply", str(root / "sobel.onnx"), str(inputs),
                                                   "--out", str(root / f"local{round_}"), "-q"], env))
                address = start_cluster(env)
                times["ray apply"].append(timed([kernelnet, "apply", str(root / "sobel.onnx"), str(inputs), "--out",
                                                 str(root / f"ray{round_}"), "--engine", "ray", "--address", address,
                                                 "-q"], env))
                stop_cluster(env)
                if round_ == 0:
                    agreement = same_bytes(root / "local0", root / "ray0")
                else:  # 20,000 outputs per folder: keep the disk use of one round
                    for name in (f"local{round_}", f"ray{round_}"):
                        shutil.rmtree(root / name)
        finally:
            stop_cluster(env)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    print(f"{files} gray {args.size}x{args.size} PNGs, 2 cores, whole-process wall, {args.rounds} rounds "
          "(Ray: a head and a worker node of one CPU each on loopback)")
    print(f"{'contender':<14} {'p50 s':>7} {'min s':>7} {'files/s':>8} {'ratio':>6}")
    for name, t in times.items():
        print(f"{name:<14} {p50[name]:7.2f} {min(t):7.2f} {files / p50[name]:8.0f} "
              f"{p50['local apply'] / p50[name]:6.2f}")
    print(f"outputs: {agreement}")


if __name__ == "__main__":
    main()
