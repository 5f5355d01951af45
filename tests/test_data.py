"""Data loading (embedded, npz, tfds mock) and coding groups."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcc import data


def test_embedded_is_real_mnist():
  ds = data.load("embedded")
  assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
  assert len(ds.train.label) + len(ds.validation.label) + len(
      ds.test.label) == 5000
  assert ds.train.image.dtype == np.uint8
  assert 0.12 < ds.mean[0] < 0.14  # the well-known MNIST pixel mean


def _write_npz(directory, n_train=40, n_test=10, shape=(6, 6)):
  rng = np.random.default_rng(0)
  for split, n in (("train", n_train), ("test", n_test)):
    np.savez(directory / f"{split}.npz",
             image=rng.integers(0, 255, (n,) + shape, dtype=np.uint8),
             label=rng.integers(0, 3, n))


def test_npz_directory(tmp_path):
  _write_npz(tmp_path)
  ds = data.load(f"npz:{tmp_path}", validation_size=8)
  assert ds.input_shape == (6, 6, 1)
  assert len(ds.train.label) == 32 and len(ds.validation.label) == 8
  assert len(ds.test.label) == 10


def test_tfds_mock():
  with tfds.testing.mock_data(num_examples=30):
    ds = data.load("mnist", validation_size=5)
  assert ds.input_shape == (28, 28, 1)
  assert len(ds.train.label) == 25 and len(ds.test.label) == 30


@pytest.mark.parametrize("name, message", [
    ("no_such_dataset_xyz", "unknown dataset"),
    ("npz:/nonexistent/dir", "does not exist"),
    ("", "non-empty"),
])
def test_bad_names(name, message):
  with pytest.raises(ValueError, match=message):
    data.load(name)


def test_npz_missing_test_split(tmp_path):
  _write_npz(tmp_path)
  (tmp_path / "test.npz").unlink()
  with pytest.raises(ValueError, match="test.npz"):
    data.load(f"npz:{tmp_path}")


def _npz_split(directory, split, image, label):
  np.savez(directory / f"{split}.npz", image=image, label=label)


def _float_images(n, shape=(6, 6)):
  return np.random.default_rng(1).random((n,) + shape, dtype=np.float32)


@pytest.mark.parametrize("split", ["train", "test", "val"])
def test_nan_inputs_in_any_split_are_refused_at_load(tmp_path, split):
  _write_npz(tmp_path)
  images = _float_images(10)
  images[3, 2, 2] = np.nan
  _npz_split(tmp_path, split, images, np.zeros(10, np.int64))
  if split != "train":  # float inputs everywhere, so only the NaN differs
    _npz_split(tmp_path, "train", _float_images(40), np.zeros(40, np.int64))
  if split != "test":
    _npz_split(tmp_path, "test", _float_images(10), np.zeros(10, np.int64))
  with pytest.raises(ValueError, match=f"{'validation' if split == 'val' else split} inputs hold 1 NaN"):
    data.load(f"npz:{tmp_path}", validation_size=5)


def test_fewer_labels_than_images_is_refused(tmp_path):
  _write_npz(tmp_path)
  rng = np.random.default_rng(0)
  _npz_split(tmp_path, "train",
             rng.integers(0, 255, (40, 6, 6), dtype=np.uint8),
             rng.integers(0, 3, 20))
  with pytest.raises(ValueError, match="train has 40 inputs and 20 labels"):
    data.load(f"npz:{tmp_path}", validation_size=5)


def test_float_labels_are_refused(tmp_path):
  _write_npz(tmp_path)
  _npz_split(tmp_path, "test", np.zeros((10, 6, 6), np.uint8),
             np.full(10, 1.7))
  with pytest.raises(ValueError, match="labels must be integers"):
    data.load(f"npz:{tmp_path}", validation_size=5)


def test_labels_beyond_the_source_classes_are_refused(tmp_path, monkeypatch):
  _write_npz(tmp_path)  # labels 0..2
  read = data._npz  # pylint: disable=protected-access
  monkeypatch.setattr(data, "_npz", lambda d: read(d)._replace(num_classes=2))
  with pytest.raises(ValueError, match="has label 2 but the dataset has 2"):
    data.load(f"npz:{tmp_path}", validation_size=5)


def test_epoch_groups_use_each_sample_at_most_once():
  groups = data.epoch_groups(jax.random.PRNGKey(0), 103, 3, 4)
  assert groups.shape == (8, 4, 3)
  flat = np.asarray(groups).ravel()
  assert len(np.unique(flat)) == len(flat)
  other = data.epoch_groups(jax.random.PRNGKey(1), 103, 3, 4)
  assert not np.array_equal(groups, other)  # fresh permutation per epoch


def test_test_groups_are_seeded():
  a, b = data.test_groups(10, 3, seed=0), data.test_groups(10, 3, seed=0)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (3, 3) and len(np.unique(a)) == 9
  with pytest.raises(ValueError):
    data.test_groups(2, 3)


# A lazy tfds training split (`lazy=True`): read from the data source.


def _counting(monkeypatch):
  """Counts the training rows a SourceArray reads."""
  read, rows = data.SourceArray.__getitem__, []

  def counted(self, key):
    out = read(self, key)
    rows.append(len(np.asarray(self.rows[key]).reshape(-1)))
    return out
  monkeypatch.setattr(data.SourceArray, "__getitem__", counted)
  return rows


def test_a_lazy_tfds_split_equals_the_loaded_one(monkeypatch):
  with tfds.testing.mock_data(num_examples=30):
    eager = data.load("mnist", validation_size=5)
    rows = _counting(monkeypatch)
    lazy = data.load("mnist", validation_size=5, lazy=True)
    assert rows == [5, 25]  # the validation split, then the statistics
    train = lazy.train.image
    assert isinstance(train, data.SourceArray)
    assert (train.shape, train.dtype, train.nbytes) == (
        eager.train.image.shape, np.uint8, eager.train.image.nbytes)
    np.testing.assert_array_equal(np.asarray(train), eager.train.image)
    idx = np.array([[3, 0], [7, 7]])
    np.testing.assert_array_equal(train[idx], eager.train.image[idx])
    np.testing.assert_array_equal(train[4], eager.train.image[4])
  for split in ("train", "validation", "test"):
    np.testing.assert_array_equal(getattr(lazy, split).label,
                                  getattr(eager, split).label)
  for split in ("validation", "test"):  # read into memory
    assert isinstance(getattr(lazy, split).image, np.ndarray)
    np.testing.assert_array_equal(getattr(lazy, split).image,
                                  getattr(eager, split).image)
  np.testing.assert_array_equal(lazy.mean, eager.mean)
  np.testing.assert_array_equal(lazy.std, eager.std)


def test_lazy_statistics_read_a_bounded_sample(monkeypatch):
  monkeypatch.setattr(data, "STATS_EXAMPLES", 10)
  with tfds.testing.mock_data(num_examples=30):
    rows = _counting(monkeypatch)
    lazy = data.load("mnist", validation_size=5, lazy=True)
    assert rows == [5, 10]
    eager = data.load("mnist", validation_size=5)  # all 25
  assert not np.array_equal(lazy.mean, eager.mean)
  np.testing.assert_allclose(lazy.mean, eager.mean, atol=0.05)


def test_lazy_images_of_another_size_are_refused():
  with tfds.testing.mock_data(num_examples=8):
    train = data.load("mnist", validation_size=2, lazy=True).train.image
    wrong = data.SourceArray(train.source, (14, 14, 1), name="mnist")
    with pytest.raises(ValueError, match=r"shape \(28, 28, 1\) in images of"):
      wrong[0]
  with pytest.raises(ValueError, match="vary in size"):
    data.SourceArray([], (None, None, 3), name="x")
