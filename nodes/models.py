"""Where ScalingAR models live in a ComfyUI install: models/scalingar/ (+ extra_model_paths.yaml)."""
from __future__ import annotations

import os
from typing import Callable

import folder_paths

from scalingar_core.models import registry

FOLDER = "scalingar"
JANUS_FOLDER = "Janus-Pro"  # models/Janus-Pro/<name>/: where other Janus node packs put the original release
SIMPLEAR_FOLDER = "SimpleAR"  # models/SimpleAR/<name>/, its Cosmos decoder in models/SimpleAR/Cosmos-1.0-Tokenizer-DV8x16x16/


def register_folder() -> None:
    """Make ``scalingar`` a model folder: ComfyUI/models/scalingar first, extra_model_paths.yaml entries kept.

    extra_model_paths.yaml is read before custom nodes import, so a ``scalingar:`` entry may already exist
    (with an empty extension set); keep its paths and put the default folder first.
    """
    default = os.path.join(folder_paths.models_dir, FOLDER)
    paths, _ = folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))
    paths = [default] + [p for p in paths if p != default]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(folder_paths.supported_pt_extensions))
    for family in (JANUS_FOLDER, SIMPLEAR_FOLDER):
        default = os.path.join(folder_paths.models_dir, family)
        paths, exts = folder_paths.folder_names_and_paths.get(family, ([], set()))
        folder_paths.folder_names_and_paths[family] = ([default] + [p for p in paths if p != default], exts)


def folders() -> list[str]:
    return folder_paths.get_folder_paths(FOLDER)


def default_folder() -> str:
    return folders()[0]


def repo_dir(repo_id: str) -> str:
    """Registry layout: each source repository gets ``<models_dir>/<owner>--<name>/``."""
    return repo_id.replace("/", "--")


def folder_for(files: list[dict]) -> str:
    """The model folder holding most of a preset's repositories (first one wins ties; the default folder,
    where downloads go, when none has any). The loader itself checks every file and names what is missing."""
    best, best_count = default_folder(), 0
    for folder in folders():
        count = sum(os.path.isdir(os.path.join(folder, repo_dir(f["repo_id"]))) for f in files if f.get("repo_id"))
        if count > best_count:
            best, best_count = folder, count
    return best


def local_checkpoints(preset_repos: set[str], loadable: Callable[[str], bool] = registry.recognises) -> list[str]:
    """Files under the model folders that ``loadable(full path)`` accepts (default: a family recognises them),
    outside the presets' repository folders (those files are reached through the preset's name)."""
    skip = {repo_dir(r) for r in preset_repos}
    names = [f for f in folder_paths.get_filename_list(FOLDER) if f.replace("\\", "/").split("/")[0] not in skip]
    paths = {f: folder_paths.get_full_path(FOLDER, f) for f in names}  # None: listed from a stale cache
    return [f for f in names if paths[f] is not None and loadable(paths[f])]


def family_folders() -> dict[str, str]:
    """Dropdown value ``<Family>/<name>`` -> folder, for each model folder directly under a ``Janus-Pro``
    (either checkpoint layout) or ``SimpleAR`` model folder. The loader only ever opens folders from this map."""
    from scalingar_core.models.janus.presets import is_janus_folder
    from scalingar_core.models.simplear.presets import is_simplear_folder

    found: dict[str, str] = {}
    for family, accepts in ((JANUS_FOLDER, is_janus_folder), (SIMPLEAR_FOLDER, is_simplear_folder)):
        for base in folder_paths.get_folder_paths(family):
            if not os.path.isdir(base):
                continue
            for name in sorted(os.listdir(base)):
                path = os.path.join(base, name)
                if accepts(path):
                    found.setdefault(f"{family}/{name}", path)  # the first folder wins, like get_full_path
    return found


def full_path(filename: str) -> str:
    path = folder_paths.get_full_path(FOLDER, filename)
    if path is None:
        raise FileNotFoundError(f"{filename!r} is not in any of the model folders {folders()}; put it in "
                                f"{default_folder()} or pick another model")
    return path


register_folder()  # at import: the loader's dropdown lists this folder (idempotent)
