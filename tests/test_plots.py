"""Where figures go: inline in a notebook kernel, a named default file in a script."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from unfreeze import plots


def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    shown: list[object] = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    ipython.version_info = (9, 0)  # matplotlib reads it when a canvas is made
    display = types.ModuleType("IPython.display")
    display.display = shown.append
    display.Image = lambda data: ("png", data[:8])
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    return shown


def test_in_a_notebook_the_figure_is_shown_and_returned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shown = fake_kernel(monkeypatch)
    monkeypatch.chdir(tmp_path)
    figure = plots.plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], figsize=(3, 3))
    assert isinstance(figure, Figure) and shown == [("png", b"\x89PNG\r\n\x1a\n")]
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix_takes_fastais_cmap_norm_dec_and_plot_txt(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """fastai's plot_confusion_matrix(normalize=True, cmap='Greens', norm_dec=3, plot_txt=False) was a TypeError."""
    fake_kernel(monkeypatch)
    monkeypatch.chdir(tmp_path)
    matrix = np.array([[2, 1], [0, 3]])
    figure = plots.plot_confusion_matrix(matrix, ["cat", "dog"], normalize=True, cmap="Greens", norm_dec=3)
    axis = figure.axes[0]
    assert axis.images[0].get_cmap().name == "Greens"
    assert [text.get_text() for text in axis.texts] == ["0.667", "0.333", "0.000", "1.000"]
    bare = plots.plot_confusion_matrix(matrix, ["cat", "dog"], plot_txt=False)
    assert len(bare.axes[0].texts) == 0 and bare.axes[0].images[0].get_cmap().name == "Blues"


def test_in_a_script_a_named_file_is_saved_and_printed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None,
                                                                         version_info=(9, 0)))  # IPython, no kernel
    monkeypatch.chdir(tmp_path)
    saved = plots.plot_image_grid([np.zeros((8, 8, 3), np.uint8)] * 5, list("abcde"), nrows=1, ncols=3)
    assert saved == Path("images.png") and saved.stat().st_size > 500
    assert str(tmp_path / "images.png") in capsys.readouterr().out


def test_grid_shape_follows_nrows_and_ncols() -> None:
    assert plots._grid_shape(9, None, None) == (3, 3)
    assert plots._grid_shape(4, 1, None) == (1, 4)
    assert plots._grid_shape(9, None, 2) == (5, 2)
    with pytest.raises(ValueError, match="nrows must be a positive int"):
        plots._grid_shape(4, 0, 2)


def test_top_loss_titles_say_actual_then_predicted_with_its_probability() -> None:
    assert plots.top_loss_title("cat", "dog", 0.812, 1.934) == "cat → dog (0.81)\nloss 1.93"
    assert plots.top_loss_title(["haze", "water"], [], [], 0.5) == "haze, water → (none)\nloss 0.50"
    title = plots.top_loss_title([], ["road", "water"], [0.7, 0.55], 0.5)
    assert title == "(none) → road (0.70), water (0.55)\nloss 0.50"


def test_long_multi_label_captions_are_wrapped_and_never_overlap() -> None:
    names = ["agriculture", "artisinal_mine", "bare_ground", "blooming", "cultivation", "habitation"]
    titles = [plots.top_loss_title(names[:4], names[2:], [0.9, 0.8, 0.7, 0.6], 2.0) for _ in range(6)]
    figure = plots.image_grid_figure([np.zeros((16, 16, 3), np.uint8)] * 6, titles, nrows=2)
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    boxes = [axis.title.get_window_extent(renderer) for axis in figure.axes]
    assert all(axis.get_title().count("\n") >= 2 for axis in figure.axes)  # wrapped, not one long line
    for first in range(len(boxes)):
        for second in range(first + 1, len(boxes)):
            assert not boxes[first].overlaps(boxes[second]), (first, second)
    images = [axis.get_window_extent(renderer) for axis in figure.axes]
    for box, image in zip(boxes[3:], images[:3], strict=True):  # a second-row caption stays below the first row
        assert box.y1 <= image.y0 + 1
