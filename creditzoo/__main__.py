"""``python -m creditzoo``: the command-line interface, e.g. under ``accelerate launch -m creditzoo train ...``."""

from creditzoo.cli import main

if __name__ == "__main__":
    main()
