"""Load and save BrainLM checkpoints: a local folder or the Hugging Face Hub, strictly checked.

The folder layout is the Hugging Face one: ``config.json`` plus ``pytorch_model.bin`` (or
``model.safetensors``), as in folder ``old_13M`` of ``vandijklab/brainlm`` (BrainLM, Ortega Caro
et al., ICLR 2024; see ``shared/brainlm/SPEC.md`` §10). :func:`save_brainlm` writes the same layout,
so models pretrained by fmtc load through the same path.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import torch

from fmtc.errors import InvalidDataError
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.storage import atomic_path, sha256_file, write_torch

DEFAULT_SOURCE = "vandijklab/brainlm/old_13M"
OFFICIAL_REPO = "vandijklab/brainlm"
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")
_MANUAL_DOWNLOAD = (
    "To get the files by hand, download config.json and pytorch_model.bin from "
    "https://huggingface.co/vandijklab/brainlm/tree/main/old_13M (the same checkpoint as "
    "pretrained_models/2023-06-06-22_15_00-checkpoint-1400/ of "
    "https://github.com/vandijklab/BrainLM, whose weights are on the Hub only) into one folder, "
    "then pass that folder: load_brainlm('/path/to/folder')."
)
_LICENCE_NOTICE = (
    "fmtc: the official BrainLM weights (huggingface.co/vandijklab/brainlm) are licensed "
    "CC BY-NC-ND 4.0: non-commercial use only, no redistribution of modified weights."
)


logger = logging.getLogger(__name__)


class BrainLMLoadError(InvalidDataError):
    """A BrainLM checkpoint could not be found, read or matched to the model."""


def load_brainlm(
    source: str | os.PathLike[str] = DEFAULT_SOURCE,
    revision: str | None = None,
    *,
    device: str | torch.device | None = None,
    sha256: str | None = None,
) -> BrainLM:
    """Load a BrainLM checkpoint into a :class:`~fmtc.represent.brainlm.BrainLM` in eval mode.

    Parameters
    ----------
    source : str or path-like, default="vandijklab/brainlm/old_13M"
        A local folder holding ``config.json`` and ``pytorch_model.bin`` or
        ``model.safetensors``, or a Hugging Face repo id ``owner/repo`` optionally followed by a
        subfolder (``owner/repo/subfolder``), fetched into the normal Hugging Face cache.
    revision : str, optional
        Branch, tag or commit on the Hub; ignored for local folders.
    device : str or torch.device, optional
        Where to put the model; ``None`` leaves it on the CPU.
    sha256 : str, optional
        Expected sha256 of the weight file; a mismatch is an error, checked before the file
        is read. Pin Hub checkpoints with it (or with a commit ``revision``).

    Returns
    -------
    BrainLM
        The model in eval mode. ``model.source_info`` records ``source``, ``revision``,
        ``commit`` (the Hub snapshot, or ``None`` for a folder), ``weights_sha256`` and ``files``.

    Raises
    ------
    BrainLMLoadError
        If the files cannot be found or fetched (the message says how to get them by hand), the
        config is not a BrainLM config, or the weights do not match it (keys named).
    """
    folder = Path(source).expanduser()
    repo_id, commit = None, None
    check_not_a_file(source)
    if folder.is_dir():
        config_path, weights_path = _local_files(folder)
    elif looks_like_path(source):
        raise BrainLMLoadError(f"BrainLM checkpoint folder {str(source)!r} does not exist.")
    else:
        repo_id = _split_repo_id(str(source))[0]
        config_path, weights_path, commit = _hub_files(str(source), revision)
        if revision is None and sha256 is None:
            logger.warning("BrainLM %s is not pinned: it resolved to commit %s. Set "
                           "brainlm.revision to that commit (or brainlm.sha256) so that a later "
                           "upload cannot change your features.", source, commit)
    digest = sha256_file(weights_path)
    if sha256 is not None and digest != sha256.lower():
        raise BrainLMLoadError(
            f"{weights_path}: sha256 {digest} differs from the pinned {sha256} (plan key "
            "brainlm.sha256); the file is damaged or another checkpoint. Delete it and fetch "
            "it again, or correct the pin")
    model = _build(config_path, weights_path)
    model.source_info = {
        "source": str(source),
        "revision": revision if repo_id else None,
        "commit": commit,
        "weights_sha256": digest,
        "files": [config_path.name, weights_path.name],
    }
    if repo_id is not None and repo_id.lower() == OFFICIAL_REPO:
        _print_licence_notice()
    if device is not None:
        model.to(device)
    return model.eval()


def save_brainlm(model: BrainLM, folder: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``pytorch_model.bin`` into ``folder``, each atomically.

    Parameters
    ----------
    model : BrainLM
        The model to save; its tensors are copied to the CPU.
    folder : str or path-like
        Destination folder, created if missing. Existing files are replaced.

    Returns
    -------
    Path
        The folder, readable by :func:`load_brainlm`.
    """
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Not to the temporary path: torch names the archive's records after the file it is
    # given, so identical weights would hash differently (and miss every cache keyed by them).
    write_torch(folder / "pytorch_model.bin", state)
    with atomic_path(folder / "config.json") as tmp:
        tmp.write_text(model.config.to_json(), encoding="utf-8")
    return folder


def _local_files(folder: Path) -> tuple[Path, Path]:
    config_path = folder / "config.json"
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    missing = [] if config_path.is_file() else ["config.json"]
    if not weights:
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise BrainLMLoadError(
            f"BrainLM checkpoint folder {str(folder)!r} lacks {' and '.join(missing)}. A "
            "checkpoint folder holds config.json and pytorch_model.bin (or model.safetensors)."
        )
    return config_path, weights[0]


def check_not_a_file(source: str | os.PathLike[str]) -> None:
    """Refuse a weight or config file given where a checkpoint folder is expected."""
    path = Path(source).expanduser()
    if path.is_file():
        raise BrainLMLoadError(f"{source} is a file; a BrainLM source is the checkpoint folder "
                               f"that holds config.json and the weights: pass {path.parent}")


def looks_like_path(source: str | os.PathLike[str]) -> bool:
    """Whether a checkpoint source names a local path (not a Hugging Face repo id)."""
    if not isinstance(source, str):
        return True
    if source.startswith((".", "/", "~", "\\")) or Path(source).exists():
        return True
    # 'data/models/typo': its first folder exists here, so it is a mistyped local path, not a
    # Hub repo id (which would otherwise cost a round of network retries to find out).
    first = Path(source).parts[0] if Path(source).parts else ""
    return bool(first) and Path(first).is_dir()


def _split_repo_id(source: str) -> tuple[str, str | None]:
    parts = source.strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise BrainLMLoadError(
            f"{source!r} is neither an existing folder nor a Hugging Face repo id of the form "
            "'owner/repo' or 'owner/repo/subfolder'."
        )
    return "/".join(parts[:2]), "/".join(parts[2:]) or None


def _hub_files(source: str, revision: str | None) -> tuple[Path, Path, str | None]:
    """Fetch config and weights through the Hugging Face cache; return them and the commit."""
    import huggingface_hub
    from huggingface_hub import errors

    repo_id, subfolder = _split_repo_id(source)

    def fetch(name: str) -> Path:
        return Path(
            huggingface_hub.hf_hub_download(repo_id, name, subfolder=subfolder, revision=revision)
        )

    where = f"{source!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        config_path = fetch("config.json")
    except Exception as exc:  # offline, unreachable, no such repo/file: all need the same advice
        raise BrainLMLoadError(
            f"{source!r} is not a local folder, and config.json of BrainLM checkpoint {where} "
            "could not be fetched from the Hugging Face Hub or found in its local cache "
            f"({type(exc).__name__}: {exc}). {_MANUAL_DOWNLOAD}"
        ) from exc
    failures = []
    for name in WEIGHT_FILES:
        try:
            weights_path = fetch(name)
            break
        except errors.EntryNotFoundError as exc:  # not in the repo, or not cached offline
            failures.append(f"{name}: {type(exc).__name__}")
        except Exception as exc:
            raise BrainLMLoadError(
                f"Could not get {name} of BrainLM checkpoint {where} "
                f"({type(exc).__name__}: {exc}). {_MANUAL_DOWNLOAD}"
            ) from exc
    else:
        raise BrainLMLoadError(
            f"Could not get a weight file ({' or '.join(WEIGHT_FILES)}) of BrainLM checkpoint "
            f"{where} from the Hugging Face Hub or its local cache ({'; '.join(failures)}). "
            f"{_MANUAL_DOWNLOAD}"
        )
    return config_path, weights_path, _snapshot_commit(config_path)


def _snapshot_commit(path: Path) -> str | None:
    # Cached files live under .../snapshots/<commit>/..., which names the resolved revision.
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _build(config_path: Path, weights_path: Path) -> BrainLM:
    try:
        config = BrainLMConfig.from_json(config_path)
    except (ValueError, TypeError) as exc:
        raise BrainLMLoadError(f"{config_path}: {exc}") from exc
    model = BrainLM(config)
    state = _read_weights(weights_path)
    _check_state_dict(model.state_dict(), state, weights_path)
    model.load_state_dict(state, strict=True)
    return model


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message may suggest weights_only=False: never do that with a file that
        # fails the safe loader (it could run arbitrary code).
        message = str(exc).strip()
        reason = (message.splitlines()[0] if message and "weights_only" not in message
                  else "not a plain state_dict of tensors")
        raise BrainLMLoadError(
            f"{path}: not a BrainLM weight file that can be read safely ({type(exc).__name__}: "
            f"{reason}). It is damaged, truncated or not a checkpoint: download or save it "
            "again") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise BrainLMLoadError(f"{path}: holds a {type(state).__name__}, not a state_dict of "
                               "tensors; save the model with save_brainlm")
    return state


def _check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, Any], path: Path) -> None:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [
        f"{k} (checkpoint {tuple(found[k].shape)}, config {tuple(v.shape)})"
        for k, v in expected.items()
        if k in found and tuple(getattr(found[k], "shape", ())) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label}: {', '.join(keys)}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if keys
        ]
        raise BrainLMLoadError(
            f"BrainLM weights {path} do not match the config beside them. "
            + "; ".join(problems)
            + ". Check that config.json and the weights come from the same checkpoint."
        )


@functools.cache
def _print_licence_notice() -> None:
    # Cached so the notice appears once per process (stderr even when logging is not set up).
    logging.getLogger(__name__).warning(_LICENCE_NOTICE)
