"""Speech front end: one-second 16 kHz clips -> log-magnitude spectrograms.

The reference (`Thesys-lab/parity-models`, `train/datasets/gcommands_dataset.py`,
librosa 0.6.2) computes an STFT with 20 ms windows (n_fft = 320 samples), a
10 ms hop (160 samples), a periodic Hamming window and centred frames (the
clip reflect-padded by n_fft / 2 on each side), takes the magnitude and
`log1p`, keeps 101 frames, and z-scores each spectrogram on its own. jaxcc
does the same in JAX: a clip of 16,000 samples gives 161 frequency bins x 101
frames. Samples are int16 PCM scaled by 1/32768 (as `librosa.load`).

Clip lengths: samples at or past a clip's `length` are ignored; shorter
clips are zero-padded to 16,000 samples; a clip longer than 16,000 samples is
an error (the front end covers exactly one second: trim or split it first).
"""

import jax
import jax.numpy as jnp
import numpy as np

CLIP_SAMPLES = 16_000  # one second at 16 kHz
N_FFT = 320  # 20 ms window
HOP = 160  # 10 ms hop
NUM_BINS = N_FFT // 2 + 1  # 161
NUM_FRAMES = 1 + CLIP_SAMPLES // HOP  # 101
_BATCH = 256


def hamming(n: int = N_FFT) -> np.ndarray:
  """The periodic Hamming window (librosa's and scipy's `fftbins=True`)."""
  return (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / n)).astype(
      np.float32)


def check_lengths(clips, lengths=None) -> np.ndarray:
  """The `(N,)` true lengths of `clips` (default: their full lengths).

  Raises:
    ValueError: a clip is not 1-D, a length is negative or exceeds its clip,
      or a clip is longer than 16,000 samples.
  """
  if lengths is None:
    lengths = [len(clip) for clip in clips]
  if len(lengths) != len(clips):
    raise ValueError(f"{len(clips)} clips but {len(lengths)} lengths")
  lengths = np.asarray(lengths, np.int64)
  for i, (clip, length) in enumerate(zip(clips, lengths)):
    if np.ndim(clip) != 1:
      raise ValueError(f"clip {i} must be 1-D audio samples, got shape "
                       f"{np.shape(clip)}")
    if not 0 <= length <= len(clip):
      raise ValueError(f"clip {i} has length {length} but holds {len(clip)} "
                       "samples")
    if length > CLIP_SAMPLES:
      raise ValueError(
          f"clip {i} has {length} samples, longer than the {CLIP_SAMPLES} "
          "(one second at 16 kHz) the spectrogram front end takes; trim or "
          "split it first")
  return lengths


@jax.jit
def log_spectrogram(waveforms_BT) -> jax.Array:
  """`(B, 16000)` waveforms -> `(B, 161, 101)` log1p STFT magnitudes."""
  pad = N_FFT // 2
  padded = jnp.pad(waveforms_BT, ((0, 0), (pad, pad)), mode="reflect")
  index = HOP * jnp.arange(NUM_FRAMES)[:, None] + jnp.arange(N_FFT)[None]
  frames_BFT = padded[:, index] * hamming()[None, None]
  magnitude = jnp.abs(jnp.fft.rfft(frames_BFT, axis=-1))
  return jnp.log1p(jnp.swapaxes(magnitude, 1, 2))


def spectrograms(clips, lengths=None) -> np.ndarray:
  """int16 clips -> `(N, 161, 101, 1)` float32 spectrograms, each z-scored.

  Args:
    clips: a sequence of 1-D int16 arrays, or an `(N, T)` array.
    lengths: optional `(N,)` true sample counts; samples past them are
      padding and ignored (see `check_lengths`).
  """
  lengths = check_lengths(clips, lengths)
  out = np.empty((len(clips), NUM_BINS, NUM_FRAMES, 1), np.float32)
  for start in range(0, len(clips), _BATCH):  # fixed shape: compiled once
    waveforms = np.zeros((_BATCH, CLIP_SAMPLES), np.float32)
    chunk = range(start, min(start + _BATCH, len(clips)))
    for row, i in enumerate(chunk):
      waveforms[row, :lengths[i]] = np.asarray(clips[i][:lengths[i]]) / 32768
    spectra = _standardize(log_spectrogram(waveforms))
    out[chunk.start:chunk.stop, ..., 0] = np.asarray(spectra)[:len(chunk)]
  return out


@jax.jit
def _standardize(spectrograms_BFT):
  """Each spectrogram to mean 0 and std 1 (left as is if it is constant)."""
  mean = spectrograms_BFT.mean(axis=(1, 2), keepdims=True)
  std = spectrograms_BFT.std(axis=(1, 2), keepdims=True)
  return (spectrograms_BFT - mean) / jnp.where(std > 0, std, 1.0)
