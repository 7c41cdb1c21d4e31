"""ESPnet ASR decoding with espnet_pinch's classes registered.

Usage: python -m espnet_pinch.bin.asr_inference --asr_train_config exp/x/config.yaml \
    --asr_model_file exp/x/valid.cer_ctc.best.pth --data_path_and_name_and_type dump/test/wav.scp,speech,kaldi_ark \
    --output_dir exp/x/decode_test [ESPnet asr_inference options]

Stock ``espnet2.bin.asr_inference`` does not know classes registered from outside ESPnet, so
this registers them first and then runs ESPnet's own inference main.
"""
import espnet_pinch.tasks.asr  # noqa: F401  (registers our classes)
from espnet2.bin.asr_inference import main as _espnet_main


def main(cmd=None):
    _espnet_main(cmd)


if __name__ == "__main__":
    main()
