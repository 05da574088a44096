"""Cleaning a run's data (fastai's ImageClassifierCleaner): items by loss, relabel or remove, apply, undo.

`collect_items` scores every training and validation image with the run's model; the page lists them
worst first. `Cleaner.apply` takes the user's marks and, in this order:

1. records what it is about to do in RUN/cleaning/journal.json (fsynced), so that `Cleaner.undo`
   reverses the last apply, also one killed half-way (the journal counts the moves done, per move);
2. folder datasets: moves a relabelled file into its new class's folder, a removed one to
   RUN/removed/<its path inside the data folder> (a rename, or across file systems a copy that is
   complete before the source goes: durable.py); CSV datasets: writes <name>.cleaned.csv beside the
   CSV (without removed rows, with new labels), keeping any previous version in RUN/cleaning/;
   a multi-label CSV row gets the label set the user chose (classes added or removed), joined with the
   run's label delimiter;
3. appends one row per change made to RUN/cleaning/log.csv (file, old label, new label or "removed",
   time); a file that was deleted by hand before the apply is skipped, not logged.

Nothing is ever deleted, and a name clash never overwrites a file: the moved file gets a "-2", "-3", ...
suffix instead. A relabelled item's loss is computed again from the model's probabilities under its
new label, so the page re-sorts it; undo puts the old loss back and removes the folders under removed/
that it emptied.

Example:
    >>> cleaner = Cleaner("runs/pets", options, collect_items(learn, dls))  # doctest: +SKIP
    >>> cleaner.apply([Change(item=3, new_label="cat"), Change(item=8, new_label=None)])  # doctest: +SKIP
    >>> multi.apply([Change(item=5, new_label=("haze", "primary"))])  # doctest: +SKIP
    >>> cleaner.undo()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import filecmp
import io
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unfreeze._io import atomic_path
from unfreeze.apps.durable import free_name, move_file, partial_path, write_durably
from unfreeze.apps.errors import AppError
from unfreeze.data import DataError
from unfreeze.data.sources import read_csv_text
from unfreeze.inference import ClassificationInterpretation
from unfreeze.tasks import MultiLabel

__all__ = ["CLEANING_DIR", "Change", "CleanItem", "Cleaner", "collect_items"]

CLEANING_DIR = "cleaning"
REMOVED_DIR = "removed"
_LOG_FIELDS = ["file", "old_label", "new_label", "time"]

# A label as a dataset stores it: a class name (single-label) or a tuple of them (multi-label).
Label = str | tuple[str, ...]


def _label_text(label: Label, delim: str = " ") -> str:
    return label if isinstance(label, str) else delim.join(label)


def _classes_of(label: Label) -> tuple[str, ...]:
    """The classes a label names: one, none (an unlabelled single-label item) or a multi-label set."""
    if isinstance(label, str):
        return (label,) if label else ()
    return tuple(label)


@dataclass
class CleanItem:
    """One image of the run's data as the page shows it; `label` is a tuple of classes for multi-label data.

    Example:
        >>> CleanItem(0, Path("a.png"), "train", ("haze", "primary"), "haze", 0.9, 1.2).classes
        ('haze', 'primary')
    """

    id: int
    path: Path
    split: str  # "train" or "valid"
    label: Label
    predicted: str
    probability: float
    loss: float
    guess: tuple[str, ...] = ()  # the model's classes ("accept guess" sets the label to them)
    probs: tuple[float, ...] = field(default=(), repr=False)  # per class, in the cleaner's class order

    def rescore(self, vocab: list[str], multi_label: bool) -> None:
        """The loss under the current label, from the model's probabilities (after a relabel or its undo).

        Single-label: -log p(label); multi-label: the mean binary cross-entropy over the classes. Without
        stored probabilities the loss stays as it was.

        Example:
            >>> item = CleanItem(0, Path("a.png"), "train", "dog", "cat", 0.8, 1.6, ("cat",), (0.8, 0.2))
            >>> item.label = "cat"; item.rescore(["cat", "dog"], False); round(item.loss, 3)
            0.223
        """
        if len(self.probs) != len(vocab):
            return
        floor = 1e-7  # a probability of exactly 0 or 1 gives a finite loss, as the training loss has

        def nll(probability: float) -> float:
            return -math.log(min(max(probability, floor), 1.0))

        if multi_label:
            wanted = set(self.classes)
            loss = sum(nll(p if name in wanted else 1.0 - p) for name, p in zip(vocab, self.probs, strict=True)) \
                / max(len(vocab), 1)
        elif isinstance(self.label, str) and self.label in vocab:
            loss = nll(self.probs[vocab.index(self.label)])
        else:
            return
        # A model that predicts NaN (a diverged run) is scored 0, as `collect_items` scores it: the page shows
        # numbers, and JSON would carry NaN as null.
        self.loss = loss if math.isfinite(loss) else 0.0

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes of its label: one, none (unlabelled) or a multi-label set."""
        return _classes_of(self.label)

    def as_json(self) -> dict[str, Any]:
        """The item for the page: its label as text, and its classes as a list (the class filter's keys).

        Example:
            >>> CleanItem(0, Path("a.png"), "train", ("haze", "primary"), "haze", 0.9, 1.2).as_json()["label"]
            'haze primary'
        """
        fields = asdict(self)
        del fields["probs"]  # the page needs the guess, not every probability
        return {**fields, "path": str(self.path), "label": _label_text(self.label), "classes": list(self.classes),
                "guess": list(self.guess)}


@dataclass(frozen=True)
class Change:
    """A mark on one item: relabel as `new_label` (a class, or for multi-label data the whole new set of
    classes), or remove it when `new_label` is None.

    Example:
        >>> Change(item=4, new_label=("cloudy",))  # multi-label: the row's classes become just "cloudy"
        Change(item=4, new_label=('cloudy',))
    """

    item: int
    new_label: Label | None


def collect_items(learner: Any, dls: Any, progress: Callable[[str], object] | None = None) -> list[CleanItem]:
    """Every decodable training and validation image with its label, the model's guess and its loss.

    The loss is the negative log of the model's probability of the label (multi-label: the mean binary
    cross-entropy over the classes), from the probabilities the page shows, as `CleanItem.rescore`
    computes it again after a relabel.

    Args:
        learner: The run's model (a Learner from the run's export).
        dls: The run's data, rebuilt from its config.json with the model's normalization.
        progress: Called with a short line before each split is scored and once at the end
            ("computing the losses: train, 600 images ..."), for the terminal while the page is not up yet.

    Example:
        >>> items = collect_items(load_learner("runs/pets/model.unfreeze"), dls)  # doctest: +SKIP
        >>> max(items, key=lambda item: item.loss).path  # doctest: +SKIP
    """
    items: list[CleanItem] = []
    multi_label = isinstance(learner.task, MultiLabel)
    started = time.perf_counter()
    for split, loader in (("train", dls.train), ("valid", dls.valid)):
        if progress is not None:
            progress(f"computing the losses: {split}, {len(loader.dataset)} images ...")
        interpretation = ClassificationInterpretation.from_learner(learner, dl=loader)
        dataset = interpretation.dl.dataset
        for position, index in enumerate(interpretation.item_indices.tolist()):
            path, label = dataset.items[index]
            probs = interpretation.probs[position]
            decoded = interpretation.preds[position]
            predicted = learner.task.labels_of(decoded, dls.vocab)
            probability = float(probs[int(decoded)]) if decoded.ndim == 0 else float(probs.max())
            probability = probability if math.isfinite(probability) else 0.0  # a diverged run's NaN, as for the loss
            loss = float(interpretation.losses[position])
            guess = (predicted,) if isinstance(predicted, str) else tuple(predicted)
            item = CleanItem(len(items), Path(path), split, label if isinstance(label, str) else tuple(label),
                             _label_text(predicted), probability, loss if math.isfinite(loss) else 0.0,
                             guess, tuple(float(value) for value in probs.tolist()))
            # The loss of the probabilities the page shows (calibrated, if the model is), so that a relabel
            # and its undo are scored on the same scale as every other item.
            item.rescore(list(dls.vocab), multi_label)
            items.append(item)
    if progress is not None:
        progress(f"computed the losses of {len(items)} images in {time.perf_counter() - started:.1f} s")
    return items


def _is_label(stored: Any) -> bool:
    """A label as the journal stores it: a class name, a list of them, or None (removed)."""
    return stored is None or isinstance(stored, str) or (
        isinstance(stored, list) and all(isinstance(name, str) for name in stored))


def _record_problem(record: Any) -> str | None:
    """What makes one apply of the journal unusable to undo, or None. A journal edited by hand or damaged
    is named, not guessed at: undo moves files by what it says."""
    if not isinstance(record, dict) or not {"moves", "changes", "csv"} <= record.keys():
        return "an entry is not an object with 'moves', 'changes' and 'csv'"
    if not isinstance(record["moves"], list) or not all(
            isinstance(move, list) and len(move) == 2 and all(isinstance(path, str) for path in move)
            for move in record["moves"]):
        return "its 'moves' are not [from, to] pairs of paths"
    if not isinstance(record["changes"], list) or not all(
            isinstance(change, list) and len(change) == 4 and isinstance(change[0], int)
            and isinstance(change[1], str) and _is_label(change[2]) and _is_label(change[3])
            for change in record["changes"]):
        return "its 'changes' are not [item, path, old label, new label] rows"
    table = record["csv"]
    if table is not None and not (isinstance(table, dict) and isinstance(table.get("written"), str)
                                  and isinstance(table.get("backup"), str | None)):
        return "its 'csv' is not {'written': path, 'backup': path or null}"
    if not isinstance(record.get("done", 0), int):
        return "its 'done' is not a count of moves"
    return None


def _label(stored: Any) -> Label | None:
    """A label read back from the journal (JSON has lists, not tuples)."""
    return tuple(stored) if isinstance(stored, list) else stored


class Cleaner:
    """The items of one run's data and the changes applied to them (see the module).

    Args:
        run_dir: The run directory (the log, the journal and removed/ go there).
        options: The data options of the run's config.json ("data", "csv", "label_re", ...).
        items: From `collect_items`; may be empty for `undo` alone.
        classes: The model's classes, the choices of "relabel as"; default: the items' labels.

    Example:
        >>> cleaner = Cleaner("runs/pets", {"data": "data/pets"})  # doctest: +SKIP
        >>> cleaner.undo()  # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path, options: dict[str, Any], items: list[CleanItem] | None = None,
                 classes: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.data = Path(options["data"])
        self.csv = self._csv_path(options.get("csv"))
        self.by_name = bool(options.get("label_re"))
        self.multi_label = bool(options.get("multi_label"))
        self.label_delim = str(options.get("label_delim") or " ")
        self.items = {item.id: item for item in items or []}
        self.vocab = list(classes) if classes is not None else \
            sorted({name for item in self.items.values() for name in item.classes})
        self.hidden: set[int] = set()  # removed by an apply, shown again by its undo

    def _csv_path(self, name: str | None) -> Path | None:
        if not name:
            return None
        path = Path(name)
        return path if path.is_absolute() else self.data / path

    @property
    def kind(self) -> str:
        """"csv" (labels in a CSV) or "folder" (labels are class folders)."""
        return "csv" if self.csv is not None else "folder"

    @property
    def journal_path(self) -> Path:
        """RUN/cleaning/journal.json: what each apply did, for undo."""
        return self.run_dir / CLEANING_DIR / "journal.json"

    @property
    def log_path(self) -> Path:
        """RUN/cleaning/log.csv: one row per change and per undone change."""
        return self.run_dir / CLEANING_DIR / "log.csv"

    def visible(self, split: str | None = None, label: str | None = None) -> list[CleanItem]:
        """The items not removed, worst loss first, optionally of one split and with one class among its labels.

        Example:
            >>> [item.path.name for item in cleaner.visible("valid", "cat")][:3]  # doctest: +SKIP
        """
        chosen = [item for item in self.items.values() if item.id not in self.hidden
                  and (split is None or item.split == split) and (label is None or label in item.classes)]
        return sorted(chosen, key=lambda item: -item.loss)

    def _check(self, changes: list[Change]) -> list[CleanItem]:
        if not changes:
            raise AppError("no changes to apply. Mark images as 'relabel as X' or 'remove' first")
        problems, chosen = [], []
        for change in changes:
            item = self.items.get(change.item)
            if item is None:
                problems.append(f"item {change.item} is not in this run's data")
                continue
            if change.item in self.hidden:  # a page loaded before that apply (another tab) still shows it
                problems.append(f"{item.path.name} was removed by an apply since the page showed it (in another "
                                "tab?): reload the page")
                continue
            problem = self._label_problem(change.new_label)
            if problem is not None:
                problems.append(problem)
            elif change.new_label is not None and set(_classes_of(change.new_label)) == set(item.classes):
                # Nothing to change: in a class folder the move would only rename the file (a "-2" clash suffix).
                problems.append(f"{item.path.name} already has the label {self._text(item.label)!r}; keep it instead")
            elif change.new_label is not None and self.by_name:
                problems.append(f"{item.path.name}: labels come from file names (--label-re), so a relabel would "
                                "need a rename; remove the file instead")
            elif change.new_label is not None and self.kind == "folder" and item.path.parent.name != item.label:
                problems.append(f"{item.path} is not in a folder named after its class {item.label!r}")
            chosen.append(item)
        if len({change.item for change in changes}) != len(changes):
            problems.append("an item is marked twice; keep one mark per image")
        if problems:
            raise AppError(f"cannot apply these changes: {'; '.join(problems)}. Fix the marks and apply again")
        return chosen

    def _label_problem(self, new_label: Label | None) -> str | None:
        """What is wrong with a new label for this dataset, or None: single-label data takes one class,
        multi-label data a set (a list) of classes, possibly empty."""
        if new_label is None:
            return None
        if self.multi_label != (not isinstance(new_label, str)):
            expected = "a list of classes (the new label set)" if self.multi_label else "one class name"
            return f"this dataset's labels are {expected}, got {new_label!r}"
        unknown = [name for name in _classes_of(new_label) if name not in self.vocab]
        if unknown or new_label == "":
            return f"{(unknown or [''])[0]!r} is not a class (the classes are {', '.join(self.vocab)})"
        if self.multi_label and len(set(new_label)) != len(new_label):
            return f"{list(new_label)} names a class twice"
        return None

    def _text(self, label: Label | None) -> str:
        """A label as the log and the CSV write it ("removed" for a removal)."""
        return "removed" if label is None else _label_text(label, self.label_delim)

    def _log(self, rows: list[list[str]]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.log_path.exists()
        with self.log_path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(_LOG_FIELDS)
            writer.writerows(rows)

    def _journal(self) -> dict[str, Any]:
        if not self.journal_path.is_file():
            return {"applies": []}
        try:
            journal = json.loads(self.journal_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise AppError(f"{self.journal_path} is not valid JSON ({error}); undo needs it. Restore it from "
                           f"{self.log_path}") from None
        if not isinstance(journal, dict) or not isinstance(journal.get("applies"), list) \
                or not isinstance(journal.get("undone", []), list):
            raise AppError(f"{self.journal_path} is not a cleaning journal (expected an object with a list "
                           f"'applies'); undo needs it. Restore it from {self.log_path}")
        for number, record in enumerate(journal["applies"], 1):
            problem = _record_problem(record)
            if problem is not None:
                raise AppError(f"{self.journal_path} is damaged: in apply {number}, {problem}; undo needs it. "
                               f"Restore it from {self.log_path}")
        return journal

    def _write_journal(self, journal: dict[str, Any]) -> None:
        # fsynced before anything it describes happens: undo after a kill -9 finds every move.
        write_durably(self.journal_path, json.dumps(journal, indent=2) + "\n")

    def apply(self, changes: list[Change]) -> dict[str, Any]:
        """Carry out `changes` (see the module), journalled before and during; return what was done.

        The journal records the planned moves (fsynced) before the first file moves, and how many are
        done after each one, so that `undo` restores everything after a crash or a kill at any point.
        Only changes made get a log row: a file deleted by hand before the apply is skipped and named.

        Raises:
            AppError: An unknown item or class, a relabel of a name-labelled dataset, or no changes at all;
                nothing is changed then. Or a file could not be moved: the moves done before it are
                journalled (undo reverses them) and the message says which file failed.

        Example:
            >>> cleaner.apply([Change(item=0, new_label=None)])["removed"]  # doctest: +SKIP
            1
        """
        chosen = self._check(changes)
        journal = self._journal()  # read first: a broken journal stops the apply before any file moves
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        planned = list(zip(chosen, changes, strict=True))
        missing = [str(item.path) for item, _ in planned if not item.path.exists()] if self.csv is None else []
        planned = [(item, change) for item, change in planned if str(item.path) not in missing]
        if not planned:
            raise AppError(f"nothing was changed: {', '.join(missing[:5])} no longer exist(s) (deleted by hand?). "
                           "Reload the page")
        record: dict[str, Any] = {"time": now, "moves": [], "done": 0, "csv": None,
                                  "changes": [[change.item, str(item.path), item.label, change.new_label]
                                              for item, change in planned]}
        journal["applies"].append(record)
        failure = None
        if self.csv is not None:
            record["csv"] = self._plan_cleaned_csv(self.csv, journal)
            self._write_journal(journal)
            try:
                self._write_cleaned_csv(self.csv, record["csv"], [item for item, _ in planned],
                                        [change for _, change in planned], journal)
            except BaseException:
                journal["applies"].pop()  # nothing was written: the journal forgets the plan
                self._write_journal(journal)
                raise
            record["done"] = len(planned)
            self._log([self._log_row(item, change, now) for item, change in planned])
        else:
            taken: set[Path] = set()
            for item, change in planned:
                target = free_name(self._target(item, change), taken)
                taken.add(target)
                record["moves"].append([str(item.path), str(target)])
            self._write_journal(journal)
            for index, (item, change) in enumerate(planned):
                target = Path(record["moves"][index][1])
                try:
                    move_file(item.path, target)
                except OSError as error:  # a read-only folder, a full disk: the moves done so far stay undoable
                    failure = (f"moved {index} of {len(planned)} files, then could not move {item.path} to "
                               f"{target.parent} ({error.strerror or error}). Fix that, then apply the remaining "
                               "marks again, or undo the moves done")
                    break
                record["done"] = index + 1
                self._write_journal(journal)
                self._log([self._log_row(item, change, now)])
            record["moves"] = record["moves"][:record["done"]]
            record["changes"] = record["changes"][:record["done"]]
        if not record["changes"]:
            journal["applies"].pop()
        self._write_journal(journal)
        self._update_items(record, forward=True)
        if failure is not None:
            raise AppError(failure)
        made = [change for _, change in planned][:record["done"]]
        removed = sum(change.new_label is None for change in made)
        return {"relabelled": len(made) - removed, "removed": removed, "log": str(self.log_path),
                "csv": record["csv"]["written"] if record["csv"] else None, "skipped": missing}

    def _target(self, item: CleanItem, change: Change) -> Path:
        if change.new_label is None:
            return self.run_dir / REMOVED_DIR / self._inside_data(item.path)
        return item.path.parent.parent / str(change.new_label) / item.path.name

    def _log_row(self, item: CleanItem, change: Change, now: str) -> list[str]:
        return [str(item.path), self._text(item.label), self._text(change.new_label), now]

    def _inside_data(self, path: Path) -> Path:
        try:
            return path.resolve().relative_to(self.data.resolve())
        except ValueError:  # a file outside the data folder (an absolute CSV entry): keep its name only
            return Path(path.name)

    def _plan_cleaned_csv(self, table: Path, journal: dict[str, Any]) -> dict[str, Any]:
        """Where the cleaned CSV goes and where its previous version is kept (journalled before writing)."""
        written = table.with_name(f"{table.stem}.cleaned.csv")
        backup = None
        if written.is_file():
            backup = free_name(self.run_dir / CLEANING_DIR / f"{written.stem}.before-{len(journal['applies']) - 1}"
                                                             f"{written.suffix}")
        return {"written": str(written), "backup": None if backup is None else str(backup)}

    def _write_cleaned_csv(self, table: Path, plan: dict[str, Any], chosen: list[CleanItem], changes: list[Change],
                           journal: dict[str, Any]) -> None:
        written = Path(plan["written"])
        # Later applies build on earlier ones; a file of that name that no apply wrote is only kept (backup).
        ours = any((apply.get("csv") or {}).get("written") == str(written) for apply in journal["applies"][:-1])
        source = written if ours and written.is_file() else table
        # Read as training read it (any common encoding); written back as UTF-8.
        try:
            rows = list(csv.reader(io.StringIO(read_csv_text(source), newline="")))
        except csv.Error as error:  # changed since training (a field over the module's limit): the file's fault
            raise DataError(f"{source} is not a CSV that can be read ({error}). Restore it, then apply "
                            "again") from None
        if not rows:
            raise AppError(f"{source} is empty now, so its rows cannot be corrected. Restore it, then apply again")
        header, body = rows[0], rows[1:]
        new_labels = {item.path.resolve(): change.new_label for item, change in zip(chosen, changes, strict=True)}
        kept, found = [], set()
        for row in body:
            path = (self.data / row[0]).resolve() if row else None
            if path in new_labels:
                found.add(path)
                if new_labels[path] is None:
                    continue
                row = [row[0], self._text(new_labels[path]), *row[2:]]
            kept.append(row)
        missing = [path for path in new_labels if path not in found]
        if missing:  # a row removed or renamed since training: "relabelled" would be untrue for it
            named = ", ".join(path.name for path in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                                                    else "")
            raise DataError(f"{named} has no row in {source} any more, so its change cannot be written; nothing "
                            "was changed. Unmark it, or restore its row, then apply again")
        if plan["backup"] is not None:
            Path(plan["backup"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(written, plan["backup"])
        with atomic_path(written) as tmp, tmp.open("w", newline="") as handle:
            csv.writer(handle).writerows([header, *kept])

    def _update_items(self, record: dict[str, Any], forward: bool) -> None:
        """Keep the page's items in step with the files after an apply (forward) or its undo."""
        moved = {Path(old): Path(new) for old, new in record["moves"]}
        if not forward:
            moved = {new: old for old, new in moved.items()}
        for item_id, _, old_label, new_label in record["changes"]:
            item = self.items.get(item_id)
            if item is None:
                continue
            item.path = moved.get(item.path, item.path)
            if new_label is None:
                (self.hidden.add if forward else self.hidden.discard)(item_id)
            else:  # JSON turned a multi-label tuple into a list
                label = new_label if forward else old_label
                item.label = label if isinstance(label, str) else tuple(label)
                item.rescore(self.vocab, self.multi_label)  # the page sorts it by its loss under the new label

    def undo(self) -> dict[str, Any]:
        """Reverse the last apply: files move back (or the CSV returns to its previous version).

        Also an apply that was killed half-way: each journalled move is checked on the disk, a file
        still at its original place stays, a copy that was not finished is removed (a different file at
        a planned target, put there since, is kept). A file that now occupies an original place is not
        overwritten: the returning file gets a numbered name, and the answer lists it. The log gets one
        row per reversed change.

        Raises:
            AppError: Nothing was applied, or a moved file is missing (the message names it).

        Example:
            >>> cleaner.undo()["restored"]  # doctest: +SKIP
            2
        """
        journal = self._journal()
        if not journal["applies"]:
            raise AppError(f"nothing to undo: {self.journal_path} records no apply. Apply changes first")
        record = journal["applies"][-1]
        done = int(record.get("done", len(record["moves"])))
        missing = [new for index, (old, new) in enumerate(record["moves"])
                   if index < done and not Path(new).exists() and not Path(old).exists()]
        backup = (record["csv"] or {}).get("backup")
        missing += [backup] if backup is not None and not Path(backup).is_file() and \
            Path(record["csv"]["written"]).is_file() else []
        if missing:
            raise AppError(f"cannot undo: {', '.join(missing[:5])} no longer exist(s). Put the file(s) back, or "
                           f"see {self.log_path} for what was changed")
        renamed, reversed_changes = [], set()
        for index in reversed(range(len(record["moves"]))):
            old, new = map(Path, record["moves"][index])
            with contextlib.suppress(FileNotFoundError):
                partial_path(new).unlink()  # a copy across file systems that a kill interrupted
            if not new.exists():
                continue  # never moved (killed before), or already put back by an undo that was killed
            if index >= done and old.exists():
                # A finished copy whose source was not yet unlinked: the source is the file. Only a copy is
                # ours to unlink; a different file there is one put there since the kill, and it stays.
                if filecmp.cmp(old, new, shallow=False):
                    new.unlink()
                continue
            placed = free_name(old)
            move_file(new, placed)
            reversed_changes.add(index)
            if placed != old:
                renamed.append(str(placed))
        if record["csv"] is not None:
            written = Path(record["csv"]["written"])
            # The undone version is kept, never deleted; the previous one (if any) comes back.
            if written.is_file():
                move_file(written, free_name(self.run_dir / CLEANING_DIR / f"{written.stem}.undone{written.suffix}"))
            if backup is not None and Path(backup).is_file():
                shutil.copy2(backup, written)
            reversed_changes = set(range(len(record["changes"])))
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        undone = [change for index, change in enumerate(record["changes"]) if index in reversed_changes]
        self._log([[path, self._text(_label(new_label)), self._text(_label(old_label)), now]
                   for _, path, old_label, new_label in undone])
        journal["applies"].pop()
        journal.setdefault("undone", []).append(record)
        self._write_journal(journal)
        self._update_items({**record, "changes": undone}, forward=False)
        self._remove_empty_folders([Path(new).parent for _, new in record["moves"]])
        return {"restored": len(undone), "renamed": renamed}

    def _remove_empty_folders(self, folders: list[Path]) -> None:
        """Remove the folders under RUN/removed/ that an undo emptied (and removed/ itself if empty).

        Only empty folders inside removed/ go: rmdir refuses a folder that still holds anything.
        """
        root = self.run_dir / REMOVED_DIR
        for folder in sorted(set(folders), key=lambda path: -len(path.parts)):
            while folder.is_relative_to(root):
                try:
                    folder.rmdir()
                except OSError:  # not empty (another removed file), or already gone
                    break
                if folder == root:
                    break
                folder = folder.parent
