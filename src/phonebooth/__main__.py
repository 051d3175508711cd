"""`python -m phonebooth` runs the command-line interface."""

from phonebooth.cli.main import main

if __name__ == "__main__":
    main()
