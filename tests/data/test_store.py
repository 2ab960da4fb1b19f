import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr

from tcupgan.cli.main import main
from tcupgan.data import CubeStore
from tcupgan.data import store as store_mod
from tcupgan.errors import CubeExistsError, CubeNotFoundError, InputError, StoreError
from tests.conftest import snapshot


def _store(tmp_path, **kw):
    return CubeStore.create(
        tmp_path / "s.zarr", task="binary", channel_names=["em"], class_names=["fg"], **kw
    )


def _cube(rng, d=6, h=20, w=24):
    return rng.random((1, d, h, w), dtype=np.float32), (rng.random((d, h, w)) > 0.7).astype(np.uint8)


def test_write_read_round_trip_and_lazy_slices(tmp_path):
    store = _store(tmp_path)
    image, label = _cube(np.random.default_rng(0))
    store.write_cube("a", image, label, attrs={"spacing": [2.0, 1.0, 1.0], "split": "val"})
    reopened = CubeStore(tmp_path / "s.zarr")
    cube = reopened["a"]
    np.testing.assert_array_equal(cube.image[:, 3], image[:, 3])
    np.testing.assert_array_equal(cube.label[...], label)
    assert cube.image.dtype == np.float32 and cube.label.dtype == np.uint8
    assert cube.attrs["spacing"] == [2.0, 1.0, 1.0] and cube.split == "val"
    assert cube.shape == (1, 6, 20, 24)
    assert reopened.names() == ["a"] and reopened.names(split="train") == []
    codecs = [c.get("name") for c in cube.image.metadata.to_dict()["codecs"]]
    assert "blosc" in codecs


def test_chunks_let_a_slice_read_touch_few_chunks():
    chunks = store_mod.default_chunks((4, 155, 240, 240))
    assert chunks[0] == 4 and chunks[1] <= 4  # all channels together, few slices
    n_chunks_per_slice = np.prod([-(-s // c) for s, c in zip((240, 240), chunks[2:], strict=True)])
    assert n_chunks_per_slice <= 4


def test_invalid_cube_refused_and_store_unchanged(tmp_path):
    store = _store(tmp_path)
    image, label = _cube(np.random.default_rng(1))
    before = snapshot(store.path)
    bad_image = image.copy()
    bad_image[0, 2, 3, 4] = np.nan
    cases = [
        ("nan", bad_image, label, "NaN"),
        ("shape", image, label[:, :-1], "label shape"),
        ("values", image, label * 2, "not valid for task 'binary'"),
        ("channels", np.concatenate([image, image]), label, "C=1"),
        ("bad name!", image, label, "cube name"),
        ("float-label", image, label.astype(np.float32), "not an integer"),
    ]
    for name, img, lab, msg in cases:
        with pytest.raises(InputError, match=msg):
            store.write_cube(name, img, lab)
    assert snapshot(store.path) == before


def test_exception_mid_write_leaves_no_visible_cube(tmp_path, monkeypatch):
    store = _store(tmp_path)
    image, label = _cube(np.random.default_rng(2))
    real_put = store_mod._put

    def failing_put(group, key, data):
        real_put(group, key, data)
        if key == "label":
            raise OSError("disk full (injected)")

    monkeypatch.setattr(store_mod, "_put", failing_put)
    with pytest.raises(OSError, match="injected"):
        store.write_cube("a", image, label)
    assert store.names() == [] and "a" not in store
    assert not (store.path / store_mod.STAGING).exists()


def test_killed_process_mid_write_leaves_no_visible_cube(tmp_path):
    """A real crash: the writing process dies (os._exit) after some chunks are on disk."""
    store = _store(tmp_path)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from tcupgan.data import store as s
        real = s._put
        def put(group, key, data):
            real(group, key, data)
            os._exit(3)  # die after the image, before the label and the commit
        s._put = put
        st = s.CubeStore({str(store.path)!r}, mode="r+")
        st.write_cube("crash", np.ones((1, 8, 64, 64), np.float32), np.zeros((8, 64, 64), np.uint8))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 3, proc.stderr.decode()
    leftovers = list((store.path / store_mod.STAGING).rglob("*"))
    assert leftovers, "the crashed writer should have left staged data behind"
    assert store.names() == [] and "crash" not in store
    assert store.leftovers() == 1
    assert store.clean_staging() == {
        "restored": [],
        "removed": [leftovers[0].relative_to(store.path / ".staging").parts[0]],
    }
    assert not (store.path / store_mod.STAGING).exists()


def test_a_kill_between_the_two_renames_of_a_replacement_loses_nothing(tmp_path, capsys):
    """Overwriting an array swaps it by two renames; a writer killed between them (the pause injected
    here) leaves readers the new copy, and clean_staging puts it in place."""
    store = CubeStore.create(tmp_path / "s.zarr", task="binary", channel_names=["em"], class_names=["fg"])
    store.write_cube("c", np.ones((1, 4, 16, 16), np.float32), np.zeros((4, 16, 16), np.uint8))
    store.write_array("c", "prediction", np.zeros((4, 16, 16), np.uint8))
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from tcupgan.data import store as s
        rename = os.rename
        def kill_after_first(src, dst):
            rename(src, dst)
            if "replaced-" in str(dst):
                os._exit(9)  # the old array is aside, the new one not yet in place
        s.os.rename = kill_after_first
        st = s.CubeStore({str(store.path)!r}, mode="r+")
        st.write_array("c", "prediction", np.ones((4, 16, 16), np.uint8), overwrite=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    assert not (store.path / "c" / "labels" / "prediction" / "0").exists()  # the window the kill left
    cube = CubeStore(store.path)["c"]
    assert "prediction" in cube and cube["prediction"][...].min() == 1  # readers get the new copy
    assert store.leftovers() == 1
    assert main(["info", str(store.path)]) == 0
    assert "1 interrupted write(s)" in capsys.readouterr().out
    assert main(["clean", str(store.path)]) == 0
    assert "restored c/labels/prediction/0" in capsys.readouterr().out and store.leftovers() == 0
    assert CubeStore(store.path)["c"]["prediction"][...].min() == 1


def test_existing_cube_needs_overwrite(tmp_path):
    store = _store(tmp_path)
    image, label = _cube(np.random.default_rng(3))
    store.write_cube("a", image, label)
    with pytest.raises(CubeExistsError):
        store.write_cube("a", image, None)
    store.write_cube("a", image * 2, None, overwrite=True)
    np.testing.assert_allclose(store["a"].image[...], image * 2)
    assert store["a"].label is None


def test_array_writer_streams_and_commits_atomically(tmp_path):
    store = _store(tmp_path)
    image, label = _cube(np.random.default_rng(4))
    store.write_cube("a", image, label)
    with pytest.raises(RuntimeError), store.array_writer("a", "prediction", (1, 6, 20, 24), "uint8") as out:
        out[:, :3] = 1
        raise RuntimeError("interrupted")
    assert "prediction" not in store["a"]
    with store.array_writer("a", "prediction", (1, 6, 20, 24), "uint8", attrs={"ckpt": "x"}) as out:
        for z in range(0, 6, 2):
            out[:, z : z + 2] = z
    pred = store["a"]["prediction"]
    assert pred[0, 5, 0, 0] == 4 and pred.attrs["ckpt"] == "x"
    with pytest.raises(StoreError, match="reserved"):
        store.write_array("a", "image", image)


def test_open_many_cubes_reads_no_array(tmp_path, monkeypatch):
    store = _store(tmp_path)
    image, label = _cube(np.random.default_rng(5), d=1, h=8, w=8)
    for i in range(300):
        store.write_cube(f"c{i:04d}", image, label)

    def no_array_reads(*args, **kwargs):
        raise AssertionError("opening or listing the store must not open arrays")

    monkeypatch.setattr(zarr, "open_array", no_array_reads)
    reopened = CubeStore(store.path)
    assert len(reopened) == 300 and reopened.names()[-1] == "c0299"
    assert len(reopened.names(split="train")) > 100
    rows = reopened.summary()
    assert rows[0]["arrays"] == ["image", "label"]


def test_errors_name_what_to_do(tmp_path):
    with pytest.raises(StoreError, match="tcupgan ingest"):
        CubeStore(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a tcupgan cube store"):
        CubeStore(tmp_path / "plain.zarr")
    store = _store(tmp_path)
    with pytest.raises(CubeNotFoundError, match="tcupgan info"):
        store["nope"]
    with pytest.raises(StoreError, match="read-only"):
        CubeStore(store.path).write_cube("x", *_cube(np.random.default_rng(0)))
    with pytest.raises(StoreError, match="holds"):
        CubeStore.create(store.path, task="brats", channel_names=["a"], class_names=["b"], exist_ok=True)


def test_delete_removes_cube(tmp_path):
    store = _store(tmp_path)
    store.write_cube("a", *_cube(np.random.default_rng(6)))
    store.delete("a")
    assert store.names() == [] and not (store.path / store_mod.STAGING).exists()
