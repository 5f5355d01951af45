"""Speech recognition (paper §V-E): Google Speech Commands, VGG-11, k = 2.

  python train.py --config configs/speech.py --workdir runs/speech
  # The 300 real clips in shared/data (no download; a smoke test, not a
  # benchmark):
  python train.py --config configs/speech.py:dataset=npz:../shared/data/\
speech_commands_mini --workdir runs/speech-mini

Clips become 161 x 101 log-spectrograms once, at load time (`jaxcc.audio`:
20 ms periodic-Hamming windows, 10 ms hop, log1p magnitude, each spectrogram
z-scored, as the reference loader); the summation encoder sums spectrograms.
`model=lenet5` is the small alternative.

Paper setup (§V-E and the reference's gcommands config): VGG-11 base and
parity models, addition encoder and subtraction decoder, MSE, Adam 1e-3,
L2 1e-5, batch 32-64, k = 2, 3, 4, 1000 parity-model epochs, on the 30 words
of Speech Commands v0.01. Result: at k = 2 the degraded accuracy is at most
6.5 points below A_a across the image and speech tasks (Fig. 8; the speech
values appear only in the figure). tfds `speech_commands` is v0.02 with 12
labels (10 words, silence, unknown), so its numbers are not the paper's.
"""

from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.dataset = "speech_commands"
  config.model = "vgg11"
  return common.apply_args(config, arg)
