"""`python -m tunelab ...` — what `accelerate launch -m tunelab train sft RECIPE` runs in every process."""

from tunelab.cli import main

if __name__ == "__main__":
    main()
