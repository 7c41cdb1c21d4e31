"""ESPnet ASR training with espnet_pinch's classes registered.

Usage: python -m espnet_pinch.bin.asr_train --config conf/train.yaml [ESPnet asr_train options]

Takes exactly the options of ``espnet2.bin.asr_train``; ``--frontend s3prl_pinch`` and
``--encoder linear`` become available.
"""
from espnet_pinch.tasks.asr import ASRTask


def main(cmd=None):
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
