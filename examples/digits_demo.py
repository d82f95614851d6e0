"""Offline demo: train a small CNN on scikit-learn's digits with the saliency monitor attached.

    python examples/digits_demo.py [--epochs 3] [--out outputs/demo]

Prints a table of deletion/insertion scores per explainer after each validation epoch, leaves an
offline W&B run (upload later with `wandb sync`), a CSV log and PNG plots under --out.
"""

from pl_saliency.demo import main

if __name__ == "__main__":
    main()
