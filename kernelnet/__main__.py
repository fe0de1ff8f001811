"""``python -m kernelnet`` runs the command line."""

from kernelnet.cli import console_main

if __name__ == "__main__":
    console_main()
