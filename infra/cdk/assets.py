"""The two code assets, built without Docker: the Lambda layer (the ``subconscious`` package and
its runtime dependencies from ``requirements.txt``, as wheels for Lambda's platform) and the
functions (the ``functions`` package alone). Nothing of the development environment (CDK,
cdk-nag, moto, pytest, ...) reaches either.

    python -m infra.cdk.assets build/layer     # build the layer, print its unzipped size
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from infra import definitions as d

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements.txt"
PACKAGE = ROOT / "layers" / "subconscious"
# Lambda's python3.12 runtime is Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run on
# it (numpy 2.3+ publishes only those for aarch64), and manylinux2014 ones of course.
PLATFORMS = {
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}
STAMP = ".built"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function + layers, unzipped
DEV_ONLY = ("aws_cdk", "jsii", "constructs", "cdk_nag", "cfnlint", "moto", "pytest", "mypy")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def python_version() -> str:
    return d.LAMBDA_RUNTIME.removeprefix("python")


def pip_command(target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--requirement",
        str(REQUIREMENTS),
        "--target",
        str(target),
        *(arg for tag in PLATFORMS[d.LAMBDA_ARCHITECTURE] for arg in ("--platform", tag)),
        "--implementation",
        "cp",
        "--python-version",
        python_version(),
        "--only-binary=:all:",
    ]


def size_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _sources() -> list[Path]:
    return [REQUIREMENTS, Path(__file__), *(p for p in PACKAGE.rglob("*") if p.is_file())]


def is_fresh(out: Path) -> bool:
    stamp = out / STAMP
    if not stamp.exists():
        return False
    built = stamp.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in _sources() if "__pycache__" not in p.parts)


def build_layer(out: Path) -> int:
    """Build the layer folder (``python/...``) at ``out``; return its unzipped size."""
    if out.exists():
        shutil.rmtree(out)
    site = out / "python"
    subprocess.run(pip_command(site), check=True)  # noqa: S603
    shutil.copytree(PACKAGE, site / PACKAGE.name, ignore=_IGNORE)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    leaked = [
        n
        for n in ("aws_cdk", "jsii", "cdk_nag", "cfnlint", "moto", "pytest")
        if (site / n).exists()
    ]
    if leaked:
        raise RuntimeError(f"development packages in the layer: {leaked}")
    size = size_bytes(out)
    if size > LAMBDA_UNZIPPED_LIMIT:
        raise RuntimeError(f"layer is {size} bytes unzipped, over Lambda's 250 MB")
    (out / STAMP).write_text(json.dumps({"bytes": size}))
    return size


def ensure_layer(out: Path) -> None:
    if is_fresh(out):
        return
    size = build_layer(out)
    print(f"layer built: {out} ({size / 1024 / 1024:.1f} MiB unzipped)", file=sys.stderr)


def stage_functions(out: Path) -> Path:
    """A folder holding only the ``functions`` package (the functions' code asset)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(ROOT / "functions", out / "functions", ignore=_IGNORE)
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else ROOT / "build" / "layer")
    size = build_layer(out)
    print(
        json.dumps(
            {
                "layer": str(out),
                "platforms": PLATFORMS[d.LAMBDA_ARCHITECTURE],
                "python": python_version(),
                "unzipped_bytes": size,
                "unzipped_mib": round(size / 1024 / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
