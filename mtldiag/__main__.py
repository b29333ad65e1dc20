"""``python -m mtldiag`` (and ``torchrun -m mtldiag``)."""

from mtldiag.cli import main

if __name__ == "__main__":
    main()
