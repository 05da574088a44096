"""The app commands: `unfreeze serve`, `report`, `clean`, and `export --format F --out DIR`.

Each maps its arguments onto `unfreeze.apps` (the server, the report, the cleaner, the deployment
export); the run's model and data are loaded by `load_run`, as for `unfreeze interpret`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unfreeze import runs
from unfreeze.cli.commands import command_export, load_run
from unfreeze.cli.options import UsageError, check_output_file

__all__ = ["TOKEN_ENV", "add_app_commands", "command_clean", "command_export_format", "command_report", "command_serve",
           "serve_token"]

TOKEN_ENV = "UNFREEZE_TOKEN"  # serve's token from the environment (not visible in 'ps' as --token is)
_MAX_TOKEN_BYTES = 4096

_SERVE_EXAMPLES = """\
examples:
  unfreeze serve runs/pets                       # http://127.0.0.1:8000/: drop photos, see the top 5 classes
  unfreeze serve model.unfreeze --port 0         # any free port (the address is printed)
  unfreeze serve runs/pets --host 0.0.0.0 --token-file ~/.unfreeze-token   # reachable by others: clients
                                                 # send 'Authorization: Bearer <the file's token>'
  UNFREEZE_TOKEN=... unfreeze serve runs/pets --host 0.0.0.0   # the token from the environment

The token is best given by --token-file or UNFREEZE_TOKEN: a --token on the command line is visible to
every local user in 'ps'.

API: GET /health; POST /predict with one or more multipart fields 'file', e.g.
  curl -F file=@cat.jpg -F file=@dog.jpg http://127.0.0.1:8000/predict
"""

_REPORT_EXAMPLES = """\
examples:
  unfreeze report runs/pets                      # (re)write runs/pets/report.html and print its path
  unfreeze report runs/pets runs/pets-2          # compare runs side by side: runs/comparison.html
  unfreeze report runs/a runs/b runs/c --out cmp.html

'unfreeze train' writes report.html at the end of every run; this command redraws it from the files
of the run directory only (no data or model needed).
"""

_CLEAN_EXAMPLES = """\
examples:
  unfreeze clean runs/pets                       # the cleaning page at http://127.0.0.1:8001/
  unfreeze clean runs/pets --undo                # reverse the last apply, without the page

Apply logs every change to RUN/cleaning/log.csv, then moves files (folder datasets: to the new class's
folder, or to RUN/removed/) or writes <csv name>.cleaned.csv beside a CSV. Nothing is deleted.
"""

_FORMAT_EXAMPLES = """
deployment formats (uint8 RGB [N, 3, S, S] in, probabilities out, normalization inside):
  unfreeze export runs/pets --format onnx --out deploy          # deploy/model.onnx + model_card.md
  unfreeze export runs/pets --format torchscript --out deploy   # deploy/model.pt
  unfreeze export runs/pets --format openvino --out deploy      # deploy/model.xml + model.bin
  unfreeze export runs/pets --format onnx --out deploy --int8   # also model.int8.onnx (calibrated on training
                                                                # images), accuracy and latency vs float32
  unfreeze export runs/pets --format openvino --out deploy --int8   # also model.int8.xml (NNCF, calibrated
                                                                    # on training images), accuracy change
"""


def _bounded(low: float, high: float, strict_low: bool = False) -> Callable[[str], float]:
    """An argument type for a finite number in [low, high] ((low, high] with `strict_low`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict_low and value == low) or value > high:
            bound = f"> {low:g}" if strict_low else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound} and at most {high:g}, got {text!r}")
        return value

    return parse


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return int(text)

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535 (0: any free port), got {text!r}")
    return int(text)


def add_app_commands(command: Callable[[str, str, str], argparse.ArgumentParser],
                     export: argparse.ArgumentParser) -> None:
    """Add serve, report and clean through the parser's `command(name, help, epilog)` factory, and the
    deployment options to the `export` subparser.

    Example:
        >>> # inside build_parser:
        >>> add_app_commands(command, subparsers["export"])  # doctest: +SKIP
    """
    serve = command("serve", "serve a model: an upload page and a JSON API (needs unfreeze[serve])", _SERVE_EXAMPLES)
    serve.add_argument("model", metavar="MODEL", type=Path, help="a run directory or a .unfreeze file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    serve.add_argument("--max-upload-mb", type=_bounded(0, 1024, strict_low=True), default=10.0, metavar="MiB",
                       help="largest accepted file in MiB (2**20 bytes), at most 1024 (default: 10)")
    serve.add_argument("--top-k", type=_whole(1, 1000), default=5, metavar="K",
                       help="classes listed per image (default: 5)")
    serve.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (advised with another --host; "
                                       "visible in 'ps': prefer --token-file or UNFREEZE_TOKEN)")
    serve.add_argument("--token-file", type=Path, metavar="PATH",
                       help=f"read the token from this file (its first line); or set {TOKEN_ENV}")
    serve.add_argument("--no-batching", dest="batching", action="store_false",
                       help="predict each request alone instead of grouping concurrent ones")
    serve.add_argument("--batch-window-ms", type=_bounded(0, 10_000), default=0.0, metavar="MS",
                       help="how long a request waits for others to share its batch, at most 10000 (default: 0, "
                            "a batch starts when the model is free, with every request waiting by then)")
    serve.add_argument("--max-batch", type=_whole(1, 4096), default=32,
                       help="images per model call at most (default: 32)")
    serve.add_argument("--runtime", choices=("torch", "onnx", "openvino"),
                       help="run the model in eager PyTorch, ONNX Runtime or OpenVINO (converted once, cached beside "
                            "the export, checked against PyTorch); default: torch on a GPU, else the fastest installed")
    serve.set_defaults(handler=command_serve)

    report = command("report", "write a run's report.html, or a page comparing two or more runs",
                     _REPORT_EXAMPLES)
    report.add_argument("run_dirs", metavar="RUN_DIR", type=Path, nargs="+",
                        help="a run directory written by train; several: a comparison page")
    report.add_argument("--out", type=Path, default=None,
                        help="where to write the page (default: RUN_DIR/report.html; for several runs "
                             "comparison.html beside the first)")
    report.set_defaults(handler=command_report)

    clean = command("clean", "a page to relabel or remove a run's images, worst loss first (needs unfreeze[serve])",
                    _CLEAN_EXAMPLES)
    clean.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by train")
    clean.add_argument("--undo", action="store_true", help="reverse the last apply and exit")
    clean.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    clean.add_argument("--port", type=_port, default=8001, help="TCP port; 0 picks a free one (default: 8001)")
    clean.set_defaults(handler=command_clean)

    export.epilog = (export.epilog or "") + _FORMAT_EXAMPLES
    export.add_argument("--format", choices=("onnx", "torchscript", "openvino"),
                        help="write a deployment file (uint8 in, probabilities out) into --out")
    export.add_argument("--out", type=Path, metavar="DIR", help="the folder for --format (created)")
    export.add_argument("--int8", action="store_true",
                        help="with --format onnx or openvino: also an int8 copy, and its accuracy change")
    export.set_defaults(handler=command_export_format)


def _serve_module() -> Any:
    try:
        from unfreeze.apps import serve
    except ImportError as error:
        raise UsageError(f"this command needs FastAPI and uvicorn ({error}): pip install 'unfreeze[serve]'") from None
    return serve


def serve_token(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str | None:
    """The token serve requires: --token, --token-file's first line, or $UNFREEZE_TOKEN (None: no token).

    Raises:
        UsageError: both --token and --token-file, or a token file that is missing, unreadable, not
            text or empty, or an empty token, or one that is not printable ASCII without spaces.

    Example:
        >>> serve_token(argparse.Namespace(token=None, token_file=None), {"UNFREEZE_TOKEN": "s3cret"})
        's3cret'
    """
    environ = dict(os.environ) if environ is None else environ
    if args.token is not None and args.token_file is not None:
        raise UsageError("--token and --token-file both give the token. Pass one of them")
    if args.token_file is not None:
        path = args.token_file.expanduser()
        try:
            data = path.read_bytes()[:_MAX_TOKEN_BYTES + 1] if path.is_file() else None
        except OSError as error:
            raise UsageError(f"--token-file {path} cannot be read ({error.strerror or error}). "
                             "Check its permissions") from None
        if data is None:
            raise UsageError(f"--token-file {path} is not a file. Write the token into a file, e.g. "
                             f"'python -c \"import secrets; print(secrets.token_urlsafe())\" > {path}'")
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"--token-file {path} is not text. Put the token on its first line") from None
        if len(data) > _MAX_TOKEN_BYTES:
            raise UsageError(f"--token-file {path} is larger than {_MAX_TOKEN_BYTES} bytes: not a token file")
        token = lines[0].strip() if lines else ""
        if not token:
            raise UsageError(f"--token-file {path} is empty. Put the token on its first line")
        return _sendable(token, f"--token-file {path}")
    if args.token is not None:
        if not args.token.strip():
            raise UsageError("--token is empty. Pass a secret, or leave --token out for no token")
        return _sendable(args.token, "--token")
    token = environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise UsageError(f"{TOKEN_ENV} is set but empty. Set it to the secret, or unset it for no token")
    return None if token is None else _sendable(token.strip(), TOKEN_ENV)


def _sendable(token: str, source: str) -> str:
    # An Authorization header carries ASCII, and a space ends the token: a client could never send another.
    if not all(33 <= ord(character) <= 126 for character in token):
        raise UsageError(f"the token from {source} must be printable ASCII without spaces, as an HTTP header "
                         "carries it (a client could never send this one). Use e.g. "
                         "'python -c \"import secrets; print(secrets.token_urlsafe())\"'")
    return token


def command_serve(args: argparse.Namespace) -> int:
    """`unfreeze serve`: load the model once and serve the page and API until SIGTERM or Ctrl-C (exit 0).

    Example:
        >>> main(["serve", "runs/pets", "--port", "0"])  # doctest: +SKIP
        Serving runs/pets (resnet34, 37 classes, cpu) at http://127.0.0.1:41233/ (Ctrl-C stops it)
    """
    from unfreeze.apps.batching import BatchSettings

    serve = _serve_module()
    if not args.model.exists():
        raise UsageError(f"{args.model} not found. Pass a run directory or a .unfreeze file")
    try:
        batching = BatchSettings(window_ms=args.batch_window_ms, max_batch=args.max_batch, enabled=args.batching)
    except ValueError as error:
        raise UsageError(str(error)) from None
    settings = serve.ServeSettings(top_k=args.top_k, max_upload_mb=args.max_upload_mb, token=serve_token(args),
                                   batching=batching)
    if args.token is not None:
        print(f"unfreeze: note: --token is visible to other users of this machine (in 'ps'); --token-file PATH or "
              f"{TOKEN_ENV} keeps it private", file=sys.stderr, flush=True)
    # Flushed at once: a script or test waits for the address line before it sends requests.
    try:
        serve.serve(args.model, host=args.host, port=args.port, settings=settings,
                    announce=lambda line: print(line, flush=True), runtime=args.runtime)
    except ImportError as error:  # the chosen --runtime is not installed: the message has the pip line
        raise UsageError(str(error)) from None
    return 0


def command_report(args: argparse.Namespace) -> int:
    """`unfreeze report`: (re)write RUN_DIR/report.html, or compare several run directories on one page.

    Example:
        >>> main(["report", "runs/pets"])  # doctest: +SKIP
        runs/pets/report.html
        >>> main(["report", "runs/pets", "runs/pets-2"])  # doctest: +SKIP
        runs/comparison.html
    """
    if args.out is not None:
        from unfreeze.apps.compare import COMPARISON_FILE
        from unfreeze.apps.report import REPORT_FILE

        check_output_file(args.out, "--out", COMPARISON_FILE if len(args.run_dirs) > 1 else REPORT_FILE)
    if len(args.run_dirs) > 1:
        from unfreeze.apps.compare import write_comparison

        print(write_comparison(args.run_dirs, args.out))
        return 0
    from unfreeze.apps.report import write_report

    print(write_report(args.run_dirs[0], args.out))
    return 0


def command_clean(args: argparse.Namespace) -> int:
    """`unfreeze clean`: the cleaning page for a run's data, or --undo of the last apply.

    Example:
        >>> main(["clean", "runs/pets", "--undo"])  # doctest: +SKIP
        Undone: 2 change(s) of the last apply reversed.
    """
    from unfreeze.apps.clean import Cleaner, collect_items

    run = runs.Run.open(args.run_dir)
    if args.undo:
        done = Cleaner(run.folder, run.options(("data",))).undo()
        renamed = f"; renamed to avoid a clash: {', '.join(done['renamed'])}" if done["renamed"] else ""
        print(f"Undone: {done['restored']} change(s) of the last apply reversed{renamed}.")
        return 0
    serve = _serve_module()
    from unfreeze.apps.clean_app import create_clean_app

    learn, dls, options = load_run(run)
    if options.get("task") == "regression":  # the page relabels classes; a regression run's labels are numbers
        raise UsageError(f"clean relabels or removes a classifier's images; {run.folder} predicts numbers (a "
                         f"regression task). Correct the numbers in {options.get('csv')} and train again")
    # Progress on stderr: stdout's first line stays the address that scripts wait for.
    items = collect_items(learn, dls, lambda line: print(line, file=sys.stderr, flush=True))
    cleaner = Cleaner(run.folder, options, items, classes=list(dls.vocab))
    sock = serve.bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if serve.exposure_warning(args.host, None) is not None:  # not a loopback address
        print(f"unfreeze: warning: {args.host} is reachable from other machines and the cleaning page has no "
              "authentication: anyone who can reach it can move and relabel the run's images. Keep the default "
              "--host 127.0.0.1 unless this network is yours alone (the page answers only requests naming "
              "127.0.0.1, localhost or this --host)", file=sys.stderr, flush=True)
    print(f"Cleaning page for {run.folder} ({len(cleaner.items)} images) at http://{host}:{port}/ (Ctrl-C stops it)",
          flush=True)
    serve.run_app(create_clean_app(cleaner, hosts={args.host, host}, log=lambda line: print(line, flush=True)), sock)
    return 0


def command_export_format(args: argparse.Namespace) -> int:
    """`unfreeze export`: with --format, a deployment file, its check and model_card.md; else as before.

    Example:
        >>> main(["export", "runs/pets", "--format", "onnx", "--out", "deploy"])  # doctest: +SKIP
        onnx: deploy/model.onnx
    """
    if args.format is None:
        if args.out is not None or args.int8:
            raise UsageError("--out and --int8 go with --format. Add --format onnx, torchscript or openvino")
        return command_export(args)
    if args.onnx or args.to is not None:
        raise UsageError("--onnx/--to write the float-input ONNX next to the export; --format writes the uint8 "
                         "deployment files into --out. Use one of them")
    if args.out is None:
        raise UsageError("--format needs --out DIR, the folder to write into, e.g. --out deploy")
    return _export_format(args)


def _refuse_int8_early(args: argparse.Namespace, model_path: Path) -> None:
    """--int8 where export_run would refuse it (TorchScript, a regression model): said before the model and
    the run's images are loaded, which takes seconds."""
    from unfreeze.apps.deploy_run import refuse_int8
    from unfreeze.inference.export import ExportError, read_export_metadata

    if not args.int8:
        return
    try:
        task = read_export_metadata(model_path).get("task") or {} if model_path.is_file() else {}
    except ExportError:
        task = {}  # loading the model says what is wrong with it
    refuse_int8(args.format, task.get("name") == "regression")


def _export_format(args: argparse.Namespace) -> int:
    import torch

    from unfreeze import load_learner
    from unfreeze._io import OutputWriteError
    from unfreeze.apps.deploy_run import export_run, int8_lines, write_model_card
    from unfreeze.inference.deploy import validation_images
    from unfreeze.inference.predict import trust_of
    from unfreeze.inference.quantize import calibration_images
    from unfreeze.progress import StepProgress

    model_path = runs.model_file(args.run_dir)
    _refuse_int8_early(args, model_path)
    # The run's data checks the export only when the file is that run's own model (another .unfreeze
    # file lying in a run directory was not trained on it).
    run = model_path.parent if model_path.name == "model.unfreeze" and (model_path.parent / "config.json").is_file() \
        else None
    targets = calibration = None
    if run is not None:
        learn, dls, _ = load_run(runs.Run(run))
        images, targets = validation_images(dls.valid)
        if args.int8:  # the int8 copy measures activation ranges on training images
            calibration = calibration_images(dls.train)
    else:
        learn = load_learner(model_path)
        size = int(learn.dls.size)
        images = torch.randint(0, 256, (16, 3, size, size), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
        print(f"{model_path} has no run directory: checking the export on 16 random images instead of "
              "validation images.")
    if not args.quiet:  # the export and its check take seconds to a minute: say what is running
        print(f"Writing {args.format} into {args.out} and checking it on {len(images)} images...", flush=True)
    calibrating = 0 if not args.int8 else len(images) if calibration is None else len(calibration)
    try:
        with StepProgress("int8 calibration", calibrating, quiet=args.quiet, unit="images") as progress:
            report = export_run(learn, args.out, args.format, images, targets, int8=args.int8,
                                calibration=calibration, progress=lambda done, _: progress.update(done))
    except ImportError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        if isinstance(error, OutputWriteError):
            raise  # already one line naming the file and the free space
        raise UsageError(f"cannot write into {args.out} ({error.strerror}). Choose another --out") from None
    card = write_model_card(report, learn, args.format, model_path, run)
    what = "validation images" if report.from_validation else "random images"
    print(f"{args.format}: {', '.join(str(path) for path in report.files)}")
    print(f"Check against PyTorch on {report.images} {what}: largest difference of {report.compared} "
          f"{report.max_difference:.2e}")
    if report.int8 is not None:
        print(f"int8 ({report.int8['method']}): {report.int8['file']}")
        print("\n".join(f"  {line}" for line in int8_lines(report.int8) if line))
    trust = trust_of(learn)
    if trust.has_score:  # the second output means nothing to a deployment without its threshold
        print(f"Outputs: probabilities (temperature {trust.temperature:.4g}) and ood_score: an image is not one of "
              f"the classes when ood_score > {trust.threshold:.6g}")
    print(f"Model card: {card}")
    return 0
