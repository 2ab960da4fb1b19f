"""What `tcupgan view` shows, built from the store without a window (napari needs a display)."""

import numpy as np
import pytest

from tcupgan.data import CubeStore, synthesize
from tcupgan.viz import add_cube_layers, score_figure, viewer_layers


@pytest.fixture
def predicted(tmp_path):
    path = tmp_path / "d.zarr"
    synthesize("fatchecker", path, n=1, shape=(6, 32, 32))
    store = CubeStore(path, mode="r+")
    cube = store.names()[0]
    store.update_attrs(cube, spacing=[2.0, 0.5, 0.5])
    store.write_array(cube, "probability", np.zeros((1, 6, 32, 32), np.uint8))
    store.write_array(cube, "prediction", np.ones((6, 32, 32), np.uint8))
    store.write_array(cube, "slice_novelty", np.linspace(0, 1, 6).astype(np.float32))
    return store, cube


def test_the_viewer_gets_every_channel_and_label_map_at_the_cube_spacing(predicted):
    store, cube = predicted
    layers = viewer_layers(store, cube)
    kinds = [(kwargs["name"], kind) for _, kwargs, kind in layers]
    assert kinds == [
        (["em"], "image"),
        (["p(lipid droplet)"], "image"),
        ("label", "labels"),
        ("prediction", "labels"),
    ]
    assert all(kwargs["scale"] == (2.0, 0.5, 0.5) for _, kwargs, _ in layers)
    assert layers[-1][0].shape == (6, 32, 32)  # lazy zarr arrays, not copies
    fig = score_figure(store, cube)
    assert [ax.get_title() for ax in fig.axes] == ["novelty"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.linspace(0, 1, 6), rtol=1e-6)


def test_napari_builds_the_layers_where_it_is_installed(predicted):
    """napari's window-less viewer model (its window needs an OpenGL display): the layers a user sees."""
    components = pytest.importorskip("napari.components")
    store, cube = predicted
    viewer = components.ViewerModel()
    add_cube_layers(viewer, store, cube)
    assert [layer.name for layer in viewer.layers] == ["em", "p(lipid droplet)", "label", "prediction"]
    assert tuple(viewer.layers["label"].scale) == (2.0, 0.5, 0.5)
    assert type(viewer.layers["prediction"]).__name__ == "Labels"
