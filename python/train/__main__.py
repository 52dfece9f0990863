"""`python -m train` / `torchrun ... -m train`: see train/train.py for the launch commands."""

import sys

from train.train import main

sys.exit(main())
