"""`python -m afd.train [+experiment=NAME] [-m] [key=value ...]`: see afd/cli/train.py."""

from afd.cli.train import main

if __name__ == "__main__":
    main()
