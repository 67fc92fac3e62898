"""The worker's command line: ``python -m worker`` and ``python launch.py`` (automatic1111's
launcher name, RunPod's start command) parse their flags here and start :mod:`worker.server`.

    python -m worker --tiny --port 7860                       # CPU, random tiny weights
    python -m worker --checkpoint /models/sd15.safetensors --listen --port 7860
    python -m worker --api --nowebui --listen --port 7860     # automatic1111's flags work too

Also read like automatic1111 does: ``COMMANDLINE_ARGS`` (appended to the arguments) and the
credential (``--api-auth user:pass``, else ``$WORKER_API_AUTH``, else ``$RENDERER_API_AUTH``,
the local stack's name for it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence

import uvicorn

from worker.protocol import parse_credentials
from worker.server import Shape, Worker, WorkerConfig, create_app, log

AUTH_ENVS = ("WORKER_API_AUTH", "RENDERER_API_AUTH")
# automatic1111 flags that mean nothing here but may be on a provider's command line.
_A1111_NO_OP_FLAGS = (
    "--api",
    "--nowebui",
    "--skip-install",
    "--skip-torch-cuda-test",
    "--no-hashing",
    "--no-download-sd-model",
    "--xformers",
    "--opt-sdp-attention",
    "--no-half-vae",
    "--disable-safe-unpickle",
    "--skip-version-check",
)

__all__ = ["build_arg_parser", "config_from", "main", "parse_args", "parse_credentials"]


def _shapes(text: str) -> tuple[Shape, ...]:
    try:
        return tuple(Shape.parse(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _shape(text: str) -> Shape:
    try:
        return Shape.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="automatic1111's txt2img API on diffusers. Also reads COMMANDLINE_ARGS and "
        f"the credential from --api-auth or ${AUTH_ENVS[0]}.",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--checkpoint",
        "--ckpt",
        default=os.environ.get("WORKER_CHECKPOINT"),
        help="a .safetensors/.ckpt file, a diffusers folder or a hub id ($WORKER_CHECKPOINT)",
    )
    model.add_argument(
        "--tiny", action="store_true", help="tiny random weights on the CPU (tests, local stack)"
    )
    model.add_argument(
        "--model-kind",
        choices=("sd15", "sdxl"),
        default=None,
        help="architecture of a single-file checkpoint or of --tiny (default sd15)",
    )
    model.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
    speed = parser.add_argument_group("speed")
    speed.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet and VAE decoder for --compile-shapes at start (76 s per "
        "SD 1.5 shape on an H100, minutes for SDXL)",
    )
    speed.add_argument("--compile-mode", default=None, help="torch.compile mode (default inductor)")
    speed.add_argument(
        "--compile-shapes",
        type=_shapes,
        default=_shapes(os.environ.get("WORKER_COMPILE_SHAPES", "")),
        help="WxHxB,... the compiled models serve, other shapes run eager; implies --compile "
        "($WORKER_COMPILE_SHAPES; default: the --warmup shape)",
    )
    speed.add_argument(
        "--warmup", type=_shape, default=None, help="WxH[xB] of the warm-up (native size)"
    )
    speed.add_argument("--warmup-steps", type=_positive_int, default=2)
    speed.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="channels-last memory format for UNet and VAE (default off: slower on an H100)",
    )
    speed.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let cuDNN time its convolution algorithms per shape (CUDA only; default on)",
    )
    speed.add_argument("--encode-threads", type=_positive_int, default=None)
    speed.add_argument("--png-compress-level", type=int, choices=range(10), default=6)
    speed.add_argument("--torch-threads", type=_positive_int, default=None)
    server = parser.add_argument_group("server")
    server.add_argument("--port", type=int, default=7860)
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--listen", action="store_true", help="bind 0.0.0.0 (automatic1111's)")
    server.add_argument("--api-auth", default=None, help="user:password for HTTP Basic auth")
    server.add_argument(
        "--exit-with-parent", action="store_true", help="exit when the launching process dies"
    )
    faults = parser.add_argument_group("fault injection (tests)")
    faults.add_argument(
        "--oom-above-batch",
        type=int,
        default=None,
        help="raise CUDA's out-of-memory error inside the UNet for larger batches",
    )
    for flag in _A1111_NO_OP_FLAGS:
        parser.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = list(sys.argv[1:] if argv is None else argv)
    args += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    namespace = build_arg_parser().parse_args(args)
    if not namespace.tiny and not namespace.checkpoint:
        build_arg_parser().error("give --checkpoint (or $WORKER_CHECKPOINT), or --tiny")
    return namespace


def config_from(args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        checkpoint=args.checkpoint,
        tiny=args.tiny,
        model_kind=args.model_kind,
        device="cpu" if args.tiny and args.device == "auto" else args.device,
        compile=args.compile or bool(args.compile_shapes),
        compile_mode=args.compile_mode,
        compile_shapes=args.compile_shapes,
        warmup=args.warmup,
        warmup_steps=args.warmup_steps,
        channels_last=args.channels_last,
        cudnn_benchmark=args.cudnn_benchmark,
        encode_threads=args.encode_threads,
        png_compress_level=args.png_compress_level,
        # Tiny models are all overhead: one thread each beats threads fighting over 2 cores.
        torch_threads=args.torch_threads or (1 if args.tiny else None),
        oom_above_batch=args.oom_above_batch,
    )


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    log("parent process gone: exiting")
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        credentials = parse_credentials(
            args.api_auth or next((os.environ[e] for e in AUTH_ENVS if os.environ.get(e)), None)
        )
    except ValueError as exc:
        log(str(exc))
        return 2
    worker = Worker(config_from(args))
    host = "0.0.0.0" if args.listen else args.host  # noqa: S104 (a rented machine's API)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(worker, credentials),
            host=host,
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    threading.Thread(target=worker.load_or_exit, name="load", daemon=True).start()
    log(f"listening on http://{host}:{args.port} auth={'on' if credentials else 'off'}")
    server.run()
    worker.interrupt()
    log("stopped")
    sys.stderr.flush()
    # Generations and loads run in threads that would hold the interpreter open.
    os._exit(0)
