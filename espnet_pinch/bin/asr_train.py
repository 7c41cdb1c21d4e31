"""ESPnet ASR training with espnet_pinch's classes registered.

Usage: python -m espnet_pinch.bin.asr_train --config conf/train.yaml [ESPnet asr_train options]

Takes exactly the options of ``espnet2.bin.asr_train``; ``--frontend s3prl_pinch`` and
``--encoder linear``, ``--model pinch`` and ``--pruner spg`` (+ ``--pruner_conf``)
become available.
"""
from espnet_pinch.tasks.asr import PinchASRTask


def main(cmd=None):
    PinchASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
