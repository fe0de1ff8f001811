"""The ``kernelnet`` command line. Subcommands are imported only when run, so ``--help`` never loads torch."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings
from typing import Any

import click

from kernelnet import __version__
from kernelnet.runtime.errors import CheckFailed, KernelnetError

COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("kernelnet.cli.pipeline_cmd:pipeline",
                 "Train, prune, export, quantize, verify and bench in one go; write an HTML report."),
    "train": ("kernelnet.cli.train_cmd:train", "Train a model on images (gradient descent or exact fit)."),
    "export": ("kernelnet.cli.export_cmd:export", "Export a run to dynamic-shape ONNX or a TensorRT engine."),
    "info": ("kernelnet.cli.info_cmd:info", "Describe an exported model (kind, kernel, shapes, metadata)."),
    "apply": ("kernelnet.cli.apply_cmd:apply", "Filter images or .npy arrays with an exported model (torch-free)."),
    "verify": ("kernelnet.cli.verify_cmd:verify", "Check every backend against each other and the true filter."),
    "bench": ("kernelnet.cli.bench_cmd:bench", "Latency/throughput per size and backend, beside OpenCV and PyTorch."),
    "tune": ("kernelnet.cli.tune_cmd:tune", "Autotune onnxruntime session settings and store them beside the model."),
    "quantize": ("kernelnet.cli.quantize_cmd:quantize", "Quantize a run's ONNX model to int8 (QDQ, calibrated)."),
    "prune": ("kernelnet.cli.prune_cmd:prune", "Prune a run's kernel weights into a new run (auto: lossless)."),
}
"""name → ("module:function", one-line help shown by ``kernelnet --help`` without importing the module)."""
TRAIN_COMMANDS = ("pipeline", "train", "export", "quantize", "prune")
"""Commands of the learning side: without the ``[train]`` extra they exit 2 with one line naming it."""


def _needs_train_extra(command: click.Command, name: str) -> click.Command:
    """Wrap ``command``'s callback once so that it first checks the ``[train]`` extra (``--help`` still works)."""
    if getattr(command, "_kernelnet_guarded", False) or command.callback is None:
        return command
    callback = command.callback

    def guarded(*args: Any, **kwargs: Any) -> Any:
        from kernelnet.cli.common import need_train_extra

        need_train_extra(name)
        return callback(*args, **kwargs)

    command.callback = guarded
    command._kernelnet_guarded = True  # type: ignore[attr-defined]
    return command


def _warning_line(caught: warnings.WarningMessage) -> str:
    """A warning as one ``warning: ...`` line (not Python's two-line file/source format)."""
    text = str(caught.message).strip().splitlines()
    return f"warning: {text[0] if text else caught.category.__name__}"


def _echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    for line in dict.fromkeys(_warning_line(w) for w in caught):
        click.echo(line, err=True)


class Interrupted(BaseException):
    """SIGINT or SIGTERM: unwinds like an exception, so that every atomic write cleans up behind it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_received: list[int] = []
"""Signals received while a command ran (an :class:`Interrupted` raised inside a finalizer is swallowed by Python:
the command still ends as interrupted)."""


def _interrupt(signum: int, _frame: Any) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def _quiet_unraisable(default: Any) -> Any:
    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):  # ours is recorded in _received
            default(unraisable)

    return hook


@contextlib.contextmanager
def _signals_unwind() -> Any:
    """While a command runs, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only); restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    old = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    old_hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable(sys.unraisablehook)
    try:
        yield
        if _received:  # the Interrupted was swallowed (it hit a __del__): end the command as interrupted
            raise Interrupted(_received[0])
    finally:
        sys.unraisablehook = old_hook
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _exit_interrupted(exc: Interrupted) -> None:
    name = "SIGINT" if exc.signum == signal.SIGINT else "SIGTERM"
    note = getattr(exc, "kernelnet_note", "nothing half-written was left")  # set where something was kept
    click.echo(f"error: interrupted by {name}; {note}", err=True)
    sys.exit(130 if exc.signum == signal.SIGINT else 143)


class LazyGroup(click.Group):
    """A group whose subcommands live in separate modules, imported on first use.

    Errors become exit codes: bad input or usage → one line on stderr and exit 2; a failed check →
    exit 1. No traceback for either. Warnings are held until the command ends, then printed one line each, so that
    bad input found after a warning still gives exactly one line.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        command = getattr(importlib.import_module(module), attr)
        return _needs_train_extra(command, name) if name in TRAIN_COMMANDS else command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args: Any = None, prog_name: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught, _signals_unwind():  # the usual warning filters
                try:
                    rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **kwargs)
                except (KernelnetError, click.ClickException):
                    caught.clear()  # bad input: the error line is all there is to say
                    raise
        except Interrupted as exc:
            _exit_interrupted(exc)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()} (see '{exc.ctx.command_path if exc.ctx else 'kernelnet'}"
                       " --help')", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(2)
        except KernelnetError as exc:
            click.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
            sys.exit(2)
        except CheckFailed as exc:
            _echo_warnings(caught)
            click.echo(f"check failed: {exc}", err=True)
            sys.exit(1)
        except BaseException as exc:
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, Interrupted):  # e.g. an import interrupted midway
                cause = cause.__cause__ or cause.__context__
            if isinstance(cause, Interrupted):
                _exit_interrupted(cause)
            _echo_warnings(caught)
            raise
        _echo_warnings(caught)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kernelnet")
def main() -> None:
    """kernelnet: learn an image filter, compress it, export it and prove it on the deployment box.

    \b
    Typical flow:
      kernelnet train --filter sobel                       # -> artifacts/runs/sobel-single
      kernelnet export artifacts/runs/sobel-single         # -> model.onnx (dynamic N, H, W)
      kernelnet verify artifacts/runs/sobel-single/model.onnx
      kernelnet bench artifacts/runs/sobel-single/model.onnx

    Exit codes: 0 ok, 1 a check failed, 2 bad input or usage.
    """


FAST_EXIT_COMMANDS = frozenset({"apply", "verify", "bench", "info", "tune"})
"""Torch-free commands after which :func:`console_main` ends the process without the interpreter's teardown."""


def console_main() -> None:
    """The console script and ``python -m kernelnet``: :func:`main`, then — after a torch-free runtime command —
    stdout and stderr flushed and the process ended at once. Python's teardown of onnxruntime and numpy took
    30–50 ms here, a tenth of ``kernelnet apply`` on a folder of small frames; by then every output is closed and
    renamed into place, and nothing on these paths waits for an exit handler."""
    try:
        main()
    except SystemExit as exc:
        code = exc.code
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
        if command in FAST_EXIT_COMMANDS and "torch" not in sys.modules and (code is None or isinstance(code, int)):
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):
                raise exc from None  # a closed or broken stream: the normal exit reports it
            os._exit(code or 0)
        raise
