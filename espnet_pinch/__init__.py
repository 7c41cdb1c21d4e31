from espnet_pinch.utils import quiet as _quiet

_quiet.install()  # third-party import-time noise (NLTK downloads, Flash Attention) off
