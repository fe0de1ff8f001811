"""``python -m kernelnet`` runs the command line."""

from kernelnet.cli import main

if __name__ == "__main__":
    main()
