"""`python -m tandem`: the `tandem` command."""

from tandem.cli.main import app


def main() -> None:
    app(prog_name="tandem")


if __name__ == "__main__":
    main()
