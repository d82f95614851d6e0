"""``python -m pl_saliency.cli``: the ``pl-saliency`` command."""

import sys

from pl_saliency.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
