"""The speech front end, box geometry and the tasks' input checks."""

import numpy as np
import pytest
from scipy import signal
import tensorflow_datasets as tfds

from jaxcc import audio
from jaxcc import data
from jaxcc import localization


def _numpy_log_spectrogram(waveform):
  """Centred STFT as librosa 0.6 computes it, one frame at a time."""
  padded = np.pad(waveform.astype(np.float64), audio.N_FFT // 2,
                  mode="reflect")
  window = np.hamming(audio.N_FFT + 1)[:-1]  # periodic
  frames = [padded[t * audio.HOP:t * audio.HOP + audio.N_FFT] * window
            for t in range(audio.NUM_FRAMES)]
  return np.log1p(np.abs(np.fft.rfft(frames, axis=-1))).T


def _clip(n, seed=0):
  return np.random.default_rng(seed).integers(-2**15, 2**15, n, np.int16)


def test_spectrogram_matches_numpy_and_scipy_references():
  waveform = _clip(audio.CLIP_SAMPLES) / 32768.0
  ours = np.asarray(audio.log_spectrogram(waveform[None].astype(np.float32)))
  assert ours.shape == (1, 161, 101)
  np.testing.assert_allclose(ours[0], _numpy_log_spectrogram(waveform),
                             rtol=1e-4, atol=1e-4)
  # scipy's "even" boundary is reflect padding; "spectrum" scaling divides
  # by the window sum.
  _, _, stft = signal.stft(waveform, window="hamming", nperseg=audio.N_FFT,
                           noverlap=audio.N_FFT - audio.HOP, boundary="even",
                           padded=False)
  scipy_spectrogram = np.log1p(np.abs(stft) * audio.hamming().sum())
  np.testing.assert_allclose(ours[0], scipy_spectrogram, rtol=1e-4,
                             atol=1e-4)


def test_spectrograms_are_standardised_one_by_one():
  out = audio.spectrograms([_clip(16000, 0), _clip(9000, 1)])
  assert out.shape == (2, 161, 101, 1) and out.dtype == np.float32
  np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
  np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)


def test_short_clips_are_zero_padded_and_length_is_honoured():
  short = _clip(9000)
  padded = np.concatenate([short, np.zeros(7000, np.int16)])
  garbage = np.concatenate([short, _clip(7000, 5)])  # past `length`
  out = audio.spectrograms([short, padded, garbage],
                           lengths=[9000, 16000, 9000])
  np.testing.assert_array_equal(out[0], out[1])
  np.testing.assert_array_equal(out[0], out[2])


@pytest.mark.parametrize("clips, lengths, message", [
    ([_clip(16001)], None, "longer than the 16000"),
    ([_clip(100)], [101], "has length 101 but holds 100"),
    ([_clip(100)], [-1], "has length -1"),
    ([np.zeros((2, 8), np.int16)], None, "must be 1-D"),
])
def test_bad_clips_fail_clearly(clips, lengths, message):
  with pytest.raises(ValueError, match=message):
    audio.spectrograms(clips, lengths)


@pytest.mark.parametrize("a, b, expected", [
    ((0.1, 0.2, 0.5, 0.6), (0.1, 0.2, 0.5, 0.6), 1.0),  # identical
    ((0.0, 0.0, 0.2, 0.2), (0.5, 0.5, 0.9, 0.9), 0.0),  # disjoint
    ((0.0, 0.0, 0.2, 0.2), (0.2, 0.0, 0.4, 0.2), 0.0),  # touching
    ((0.0, 0.0, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75), 0.25),  # nested
    ((0.0, 0.0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75), 1 / 7),  # overlap
    ((0.0, 0.0, 0.5, 1.0), (0.0, 0.5, 1.0, 1.0), 1 / 3),  # crossing
    ((0.5, 0.5, 0.2, 0.2), (0.0, 0.0, 1.0, 1.0), 0.0),  # no area
    ((0.3, 0.3, 0.3, 0.3), (0.3, 0.3, 0.3, 0.3), 0.0),  # both empty
])
def test_iou_of_hand_computed_cases(a, b, expected):
  assert localization.iou(a, b) == pytest.approx(expected)
  assert localization.iou(b, a) == pytest.approx(expected)


def test_iou_broadcasts_and_predictions_are_cut_to_the_image():
  truth = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
  pred = np.array([[-0.3, -0.2, 0.5, 0.5], [0.5, 0.5, 1.4, 1.0]])
  np.testing.assert_allclose(
      localization.iou(localization.clip_to_image(pred), truth), [1.0, 1.0])
  assert localization.iou(truth, truth[:1]).shape == (2,)


@pytest.mark.parametrize("box, message", [
    ((0.1, 0.1, 1.2, 0.5), "outside the image"),
    ((-0.1, 0.1, 0.5, 0.5), "outside the image"),
    ((0.6, 0.1, 0.5, 0.5), "has no area"),
    ((0.1, 0.5, 0.5, 0.5), "has no area"),
    ((0.1, np.nan, 0.5, 0.5), "not finite"),
])
def test_bad_boxes_fail_clearly(box, message):
  boxes = np.array([[0.1, 0.1, 0.4, 0.4], box], np.float32)
  with pytest.raises(ValueError, match=f"box 1 .*{message}"):
    localization.check_boxes(boxes, "test")


def test_digit_canvases_boxes_hold_exactly_the_ink():
  digits, _ = data._embedded_digits()  # pylint: disable=protected-access
  canvases, boxes = localization.digit_canvases(digits[:50], seed=0)
  assert canvases.shape == (50, 64, 64, 1) and boxes.shape == (50, 4)
  localization.check_boxes(boxes, "digits")
  for canvas, box in zip(canvases[..., 0], boxes * 64):
    rows, cols = np.flatnonzero(canvas.any(1)), np.flatnonzero(canvas.any(0))
    ink = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])
    # Bilinear resizing spills ink by at most about a pixel past the box.
    np.testing.assert_array_less(ink - box, [0.01, 0.01, 1.5, 1.5])
    np.testing.assert_array_less([-1.5, -1.5, -0.01, -0.01], ink - box)
  again, same = localization.digit_canvases(digits[:50], seed=0)
  np.testing.assert_array_equal(canvases, again)
  np.testing.assert_array_equal(boxes, same)


def test_digits_localization_dataset():
  ds = data.load("digits-localization")
  assert ds.task == data.LOCALIZATION and ds.num_outputs == 4
  assert ds.input_shape == (64, 64, 1) and ds.train.label.dtype == np.float32
  assert (len(ds.train.label), len(ds.validation.label),
          len(ds.test.label)) == (3600, 400, 1000)


def _birds(boxes):
  """A tfds data source mock whose examples carry the given boxes."""
  def as_data_source(self, split, **kwargs):
    del self, kwargs
    rng = np.random.default_rng(0)
    examples = [{"image": rng.integers(0, 255, (20, 30, 3), np.uint8),
                 "bbox": np.asarray(box, np.float32), "label": 0}
                for box in boxes]
    return {"train": examples, "test": examples} if split is None else (
        examples)
  return tfds.testing.mock_data(as_data_source_fn=as_data_source)


def test_tfds_boxes_outside_the_image_fail_clearly():
  boxes = [(0.1, 0.1, 0.5, 0.5)] * 9 + [(0.1, 0.1, 0.5, 1.5)]
  with _birds(boxes), pytest.raises(ValueError, match="outside the image"):
    data.load("caltech_birds2011", image_size=16)


def test_tfds_images_of_varying_size_need_image_size():
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(ValueError, match="set image_size"):
      data.load("cats_vs_dogs")
    ds = data.load("cats_vs_dogs", image_size=24, validation_size=1)
  assert ds.input_shape == (24, 24, 3) and ds.num_classes == 2


@pytest.mark.parametrize("name, message", [
    ("no_such_dataset_xyz", "unknown dataset"),
    ("imdb_reviews", "expected 'image' and 'label'"),
])
def test_unknown_or_unsupported_tfds_names_fail_clearly(name, message):
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(ValueError, match=message):
      data.load(name)


def test_image_size_does_not_apply_to_spectrograms(tmp_path):
  for split in ("train", "test"):
    np.savez(tmp_path / f"{split}.npz", audio=np.zeros((20, 100), np.int16),
             label=np.arange(20) % 2)
  with pytest.raises(ValueError, match="spectrograms"):
    data.load(f"npz:{tmp_path}", image_size=32)


def test_normalize_scales_uint8_but_not_floats():
  mean, std = np.float32([0.5]), np.float32([0.25])
  pixels = np.full((1, 1, 1, 1), 255, np.uint8)
  np.testing.assert_allclose(data.normalize(pixels, mean, std), 2.0)
  np.testing.assert_allclose(
      data.normalize(np.full((1, 1, 1, 1), 1.5, np.float32), mean, std), 4.0)
