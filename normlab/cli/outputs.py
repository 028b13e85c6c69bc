"""What a command may do with what an earlier run left: refuse it, resume it or replace it; and
how an interrupt ends a command.

An output folder (``demo``, ``experiment``) or a checkpoint (``train``) that already holds a
run is refused unless ``--resume`` continues it or ``--overwrite`` replaces it; ``--overwrite``
removes normlab's own files only (:func:`normlab.report.results.output_files`), never anything
else in the folder. The first SIGINT or SIGTERM during ``train`` asks the run to stop after its
current step (:func:`stop_requested`); during an experiment, or while its report is written,
either ends the sweep at once (``KeyboardInterrupt``), keeping every run that finished.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from normlab._io import OutputExistsError, json_safe

from .errors import UsageError

__all__ = [
    "INTERRUPTED",
    "check_out_dir",
    "interrupts_raise",
    "start_out_dir",
    "resume_command",
    "stop_requested",
]

INTERRUPTED = 130  # the shell's exit status for a process ended by SIGINT
_RESUME_MAY_CHANGE = ("data_dir", "download")  # where the data is read from, not what it is


def resume_command(argv: list[str]) -> str:
    """The command line that continues the command ``argv``: ``--resume`` for ``--overwrite``."""
    args = [a for a in argv if a != "--overwrite"]
    return shlex.join(["normlab", *args, *([] if "--resume" in args else ["--resume"])])


def _figure_names() -> set[str]:
    """The PNG stems any experiment writes, at its defaults and in its quick variant."""
    from normlab.experiments import EXPERIMENTS

    names = set()
    for exp in EXPERIMENTS.values():
        config = exp.config_cls()
        for c in (config, exp.quick(config)):
            names |= {f["name"] for f in exp.figures(c)}
    return names


def check_out_dir(out: Path, experiment: str, config: dict, resume: bool, overwrite: bool):
    """Check ``out`` against ``--resume`` / ``--overwrite``; writes nothing.

    Parameters
    ----------
    out : Path
        The output folder.
    experiment : str
        The experiment's name.
    config : dict
        Its config (``config_to_dict``).
    resume, overwrite : bool
        The flags.

    Returns
    -------
    records : dict of str to dict
        The runs an interrupted sweep saved in ``out/runs`` (empty unless ``resume``).

    Raises
    ------
    OutputExistsError
        ``out`` holds results and neither flag is given.
    FileNotFoundError
        ``--resume`` and ``out`` holds no run.
    ValueError
        ``--resume`` with another experiment or other settings than the saved run's.
    """
    from normlab.report.results import load_runs, output_files

    if resume:
        _check_same_run(out, experiment, json_safe(config))
        return load_runs(out)
    if not overwrite and output_files(out, _figure_names()):
        raise OutputExistsError(out, "output folder")
    return {}


def start_out_dir(out: Path, experiment: str, config: dict, overwrite: bool) -> None:
    """Remove the earlier run's files (``overwrite``) and write ``config.json``, which proves
    ``out`` writable before anything trains (a :class:`UsageError` if it is not)."""
    from normlab.report.results import remove_outputs, save_config

    if overwrite:
        remove_outputs(out, _figure_names())
    try:
        save_config(experiment, json_safe(config), out)
    except OSError as err:
        raise UsageError(f"cannot write to --out {out}: {err.strerror or err}") from None


def _check_same_run(out: Path, experiment: str, config: dict) -> None:
    """Refuse to resume ``out`` unless it holds a run of ``experiment`` with ``config``."""
    path = out / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"nothing to resume in {out}: no config.json of an earlier run; run without --resume"
        )
    try:
        saved = json.loads(path.read_text())
        saved_name, before = saved["experiment"], saved["config"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a normlab config.json; pass --overwrite") from None
    if saved_name != experiment:
        raise ValueError(
            f"cannot resume {out}: it holds a run of {saved_name!r}, not {experiment!r}; "
            "pass another --out, or --overwrite to replace it"
        )
    changed = [
        f"{k} (saved {before.get(k)!r}, given {config.get(k)!r})"
        for k in sorted(set(before) | set(config))
        if k not in _RESUME_MAY_CHANGE and before.get(k) != config.get(k)
    ]
    if changed:
        raise ValueError(
            f"cannot resume {out} with other settings: {'; '.join(changed)}; give the saved "
            "settings, or pass --overwrite to start over"
        )


@contextlib.contextmanager
def stop_requested() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM set a flag (the yielded ``() -> bool``); a second one raises
    ``KeyboardInterrupt``, to abandon even the step in flight."""
    seen: list[int] = []

    def handler(signum, frame) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)

    with _handlers(handler):
        yield lambda: bool(seen)


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt``, for the duration (SIGINT too: a process
    started in the background by a non-interactive shell inherits it ignored)."""

    def handler(signum, frame) -> None:
        raise KeyboardInterrupt

    with _handlers(handler, (signal.SIGINT, signal.SIGTERM)):
        yield


@contextlib.contextmanager
def _handlers(handler, signums=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """``handler`` for ``signums`` inside the block, the previous handlers after it."""
    before = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
