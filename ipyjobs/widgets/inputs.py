"""Where a form's files come from, for people who cannot type a server path (Voila, Binder):
files or a zip uploaded from their computer, or a folder picked under the notebook root.

Uploads are written into a fresh folder of the data folder (``uploads/<stamp>``); a zip is
unpacked there, refusing members that would land outside it. The job then reads that folder,
so a resumed job (after a reload) finds the same files again.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import ipywidgets as widgets

#: Label width shared by every field of the forms, so labels and fields line up.
LABEL_WIDTH = "7em"
#: Folders listed by the picker at most (the walk stops there).
MAX_FOLDERS = 500
#: Levels below the root the picker looks into.
MAX_DEPTH = 3


def style() -> dict[str, str]:
    return {"description_width": LABEL_WIDTH}


def labelled(label: str, *fields: widgets.Widget) -> widgets.HBox:
    """``fields`` after a label as wide as the others (for widgets that draw their
    description above themselves, such as ToggleButtons)."""
    caption = widgets.Label(label, layout=widgets.Layout(width=LABEL_WIDTH, flex="0 0 auto"))
    return widgets.HBox([caption, *fields])


def fresh_folder(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<prefix>-<time>[-n]`` that no one else uses."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = parent / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free folder name for {prefix} in {parent}")


def unpack_zip(data: bytes, name: str, target: Path) -> list[Path]:
    """Unpack a zip into ``target``; a member with an absolute path or ``..`` is refused."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{name} is not a readable zip file ({exc}): upload it again") from None
    written = []
    with archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            parts = PurePosixPath(member.filename).parts
            if member.filename.startswith("/") or ".." in parts or not parts:
                raise ValueError(
                    f"{name} holds {member.filename!r}, which points outside the zip's folder: "
                    "make the zip with relative paths"
                )
            path = target.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(member))
            written.append(path)
    return written


def save_uploads(files: Any, target: Path) -> list[Path]:
    """Write FileUpload values into ``target`` (zips unpacked); return the files written."""
    written = []
    for upload in files:
        name = Path(upload["name"]).name  # a browser may send a path: keep the file name
        data = bytes(upload["content"])
        if name.lower().endswith(".zip"):
            written += unpack_zip(data, name, target / Path(name).stem)
        else:
            (target / name).write_bytes(data)
            written.append(target / name)
    return written


def app_root() -> Path:
    """The folder the picker offers: ``$IPYJOBS_APP_ROOT``, else where the notebook runs."""
    return Path(os.environ.get("IPYJOBS_APP_ROOT") or os.getcwd()).resolve()


def folders_under(root: Path) -> list[str]:
    """Relative paths of the folders under ``root`` (hidden ones skipped), ``.`` first."""
    found = ["."]
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if not s.startswith((".", "__")))
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            subfolders[:] = []
        for sub in subfolders:
            found.append(str((Path(folder) / sub).relative_to(root)))
            if len(found) >= MAX_FOLDERS:
                return found
    return found


class InputPicker(widgets.VBox):
    """Upload files or a zip, or pick a folder under the notebook root."""

    def __init__(self, what: str, extensions: tuple[str, ...] | list[str]) -> None:
        self.root = app_root()
        accept = ",".join(f".{e}" for e in (*extensions, "zip"))
        self.source = widgets.ToggleButtons(options=["Upload", "Folder"])
        self.upload = widgets.FileUpload(
            description="Choose files", accept=accept, multiple=True,
            tooltip=f"{what} files, or a zip of them",
        )  # fmt: skip
        self.folder = widgets.Dropdown(
            description="Folder", options=folders_under(self.root), style=style(),
            layout=widgets.Layout(width="60%"),
        )  # fmt: skip
        self.rescan = widgets.Button(description="Rescan", icon="refresh",
                                     layout=widgets.Layout(width="auto"))  # fmt: skip
        self.rescan.on_click(lambda _: self._rescan())
        self._source_row = labelled("Files", self.source)
        self._upload_row = labelled("", self.upload)
        self._folder_row = widgets.HBox([self.folder, self.rescan])
        self.source.observe(lambda _: self._show(), "value")
        super().__init__([self._source_row, self._upload_row])

    def _show(self) -> None:
        row = self._upload_row if self.source.value == "Upload" else self._folder_row
        self.children = (self._source_row, row)

    def _rescan(self) -> None:
        self.folder.options = folders_under(self.root)

    def resolve(self, uploads: Path) -> str:
        """The path the job should read: uploaded files saved into a fresh folder under
        ``uploads``, or the picked folder. Raises ``ValueError`` naming what is missing."""
        if self.source.value == "Folder":
            if not self.folder.value:
                raise ValueError(f"No folder picked: choose one under {self.root}")
            return str(self.root / self.folder.value)
        if not self.upload.value:
            raise ValueError("No files uploaded: press Choose files (or pick a Folder)")
        target = fresh_folder(uploads, "upload")
        save_uploads(self.upload.value, target)
        self.upload.value = ()  # the next Start needs a new upload
        return str(target)
